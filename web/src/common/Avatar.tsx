import { useState } from 'react';

// Avatars: the image when it loads, else initials on a colour derived from the name.
// Only same-origin or data: images are loaded, so a missing external host never
// produces failed requests in the console.

function hue(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
  return h;
}

function safeSrc(url: string | null | undefined): string | null {
  if (!url) return null;
  if (url.startsWith('data:image/')) return url;
  try {
    const u = new URL(url, location.href);
    return u.origin === location.origin ? u.href : null;
  } catch {
    return null;
  }
}

export function Avatar({ name, url, size = 40, online }: { name: string; url?: string | null; size?: number; online?: boolean | null }) {
  const [failed, setFailed] = useState(false);
  const src = failed ? null : safeSrc(url);
  const initials = (name || '?')
    .split(/[\s._-]+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((p) => p[0]!.toUpperCase())
    .join('');
  return (
    <span className="avatar" style={{ width: size, height: size, fontSize: size * 0.4, background: `hsl(${hue(name)} 55% 45%)` }} aria-hidden="true">
      {src ? <img src={src} alt="" onError={() => setFailed(true)} /> : initials || '?'}
      {online != null && <span className={online ? 'presence-dot online' : 'presence-dot'} />}
    </span>
  );
}
