/// <reference types="vitest/config" />
// Vite builds the app into dist/ (served at / by NGINX and the gateway). `npm run dev` proxies
// the socket and the API to a local stack (scripts/up, NGINX on :8080; override with
// DEV_BACKEND=http://127.0.0.1:PORT). Vitest runs the unit tests in src/ (not the browser tests
// in e2e/, which `npm run e2e` runs with node --test against a real stack).
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const backend = process.env.DEV_BACKEND ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    sourcemap: false,
  },
  server: {
    proxy: {
      '/api': backend,
      '/health': backend,
      '/ws': { target: backend, ws: true },
    },
  },
  test: {
    include: ['src/**/*.test.{ts,tsx}'],
    environment: 'node',
    restoreMocks: true,
    setupFiles: ['src/test/setup.ts'],
    // Above asyncUtilTimeout (src/test/setup.ts), so a slow wait fails with its own message.
    testTimeout: 15000,
  },
});
