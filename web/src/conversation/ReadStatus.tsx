import { CheckIcon, ClockIcon, DoubleCheckIcon } from '../common/icons';

export type Delivery = 'queued' | 'sending' | 'failed' | 'sent' | 'delivered' | 'seen';

/** Single check = sent, double check = delivered, filled double check = seen. */
export function ReadStatus({ status }: { status: Delivery }) {
  switch (status) {
    case 'queued':
    case 'sending':
      return (
        <span className="read-status pending" role="img" aria-label={status === 'queued' ? 'Not sent' : 'Sending'} title={status === 'queued' ? 'Not sent' : 'Sending'} data-status={status}>
          <ClockIcon />
        </span>
      );
    case 'failed':
      return (
        <span className="read-status failed" role="img" aria-label="Failed to send" title="Failed to send" data-status="failed">
          !
        </span>
      );
    case 'sent':
      return (
        <span className="read-status sent" role="img" aria-label="Sent" title="Sent" data-status="sent">
          <CheckIcon />
        </span>
      );
    case 'delivered':
      return (
        <span className="read-status delivered" role="img" aria-label="Delivered" title="Delivered" data-status="delivered">
          <DoubleCheckIcon />
        </span>
      );
    case 'seen':
      return (
        <span className="read-status seen" role="img" aria-label="Seen" title="Seen" data-status="seen">
          <DoubleCheckIcon />
        </span>
      );
  }
}
