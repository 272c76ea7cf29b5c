// Resume positions: per tracked conversation, the highest event position the
// client holds. They go out in the `resume` that opens every connection, so the
// server replays what was missed; a new epoch drops them all.

import type { EventFrame } from '../types';

export class Positions {
  private held = new Map<string, number>();

  /** Starts tracking at `pos`, or raises a tracked position. True when it was not tracked. */
  track(conversation: string, pos: number): boolean {
    const held = this.held.get(conversation);
    if (held === undefined) {
      this.held.set(conversation, pos);
      return true;
    }
    if (pos > held) this.held.set(conversation, pos);
    return false;
  }

  /** An event arrived: a tracked conversation now holds up to its position (untracked ones stay untracked). */
  advance(f: EventFrame): void {
    const held = this.held.get(f.conversation);
    if (held !== undefined && f.pos > held) this.held.set(f.conversation, f.pos);
  }

  /** Stops tracking; false when it was not tracked. */
  delete(conversation: string): boolean {
    return this.held.delete(conversation);
  }

  get(conversation: string): number | undefined {
    return this.held.get(conversation);
  }

  clear(): void {
    this.held.clear();
  }

  /** The `positions` of a `resume` frame. */
  toResume(): Record<string, number> {
    const positions: Record<string, number> = {};
    for (const [c, p] of this.held) positions[c] = p;
    return positions;
  }
}
