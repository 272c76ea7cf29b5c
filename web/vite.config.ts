import { resolve } from 'node:path';
import { defineConfig } from 'vite';

// The gateway serves the built files; during `npm run dev` Vite proxies the
// API and the WebSocket to a running gateway (GATEWAY_URL, default :8080).
const gateway = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  // @vitejs/plugin-react is not needed: esbuild compiles JSX with the automatic runtime.
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    rollupOptions: {
      // React in its own long-cached chunk, shared by both pages.
      output: { manualChunks: { react: ['react', 'react-dom', 'react-dom/client'] } },
      input: {
        index: resolve(import.meta.dirname, 'index.html'),
        widget: resolve(import.meta.dirname, 'widget.html'),
      },
    },
  },
  server: {
    proxy: {
      '/api': { target: gateway, changeOrigin: true },
      // The gateway refuses WebSocket upgrades from other origins: present its own.
      '/ws': { target: gateway, ws: true, changeOrigin: true, headers: { origin: gateway } },
    },
  },
});
