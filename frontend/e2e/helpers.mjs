// Shared pieces of the browser tests: Debian's Chromium through playwright-core, a page on the
// stack under test, and the server's view of a conversation to compare the page against.
//
// Environment (set by scripts/e2e-browser):
//   E2E_BASE_URL        the stack's NGINX, e.g. http://127.0.0.1:23456 (must be 127.0.0.1)
//   E2E_STACK_DIR       the stack's STACK_DIR (pids/gateway-N are read to kill a gateway)
//   E2E_SCREENSHOT_DIR  where streaming.png and reconnecting.png go (default: docs/img)
//   E2E_ARTIFACT_DIR    where failure screenshots go (default: $E2E_STACK_DIR/artifacts)
//   CHROMIUM            the browser binary (default /usr/bin/chromium)

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export const BASE_URL = process.env.E2E_BASE_URL ?? 'http://127.0.0.1:8080';
export const STACK_DIR = process.env.E2E_STACK_DIR ?? path.resolve(HERE, '../../.stack');
export const SCREENSHOT_DIR = process.env.E2E_SCREENSHOT_DIR ?? path.resolve(HERE, '../../docs/img');
export const ARTIFACT_DIR = process.env.E2E_ARTIFACT_DIR ?? path.join(STACK_DIR, 'artifacts');

if (new URL(BASE_URL).hostname !== '127.0.0.1') {
  throw new Error(`E2E_BASE_URL must point at 127.0.0.1, got ${BASE_URL}`);
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    // playwright-core gives every launch a fresh temporary --user-data-dir of its own.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A new browser context (own localStorage, so its own conversation) with the chat open and
 * connected. Requests to anything but 127.0.0.1 are refused.
 */
export async function openChat(browser, options = {}) {
  const opened = await openPage(browser, options);
  await waitConnected(opened.page);
  return opened;
}

/**
 * A new browser context with the app loaded, whatever it shows first (sign-in or chat).
 * `colorScheme` is the system's (prefers-color-scheme); `permissions` are granted to the stack's
 * origin (e.g. clipboard-read).
 */
export async function openPage(
  browser,
  { viewport = { width: 1280, height: 800 }, colorScheme = 'light', permissions = [], beforeGoto } = {},
) {
  const context = await browser.newContext({ viewport, colorScheme });
  if (permissions.length > 0) await context.grantPermissions(permissions, { origin: BASE_URL });
  await context.route('**/*', (route) => {
    const { hostname } = new URL(route.request().url());
    return hostname === '127.0.0.1' ? route.continue() : route.abort();
  });
  const page = await context.newPage();
  const log = [];
  page.on('console', (m) => log.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  page.consoleLog = log;
  await beforeGoto?.(page);
  await page.goto(BASE_URL);
  return { context, page };
}

/** Waits until the indicator says connected and the conversation is loaded. */
export async function waitConnected(page, { timeout = 20_000, notNode } = {}) {
  await page.waitForFunction(
    (notNode) => {
      const el = document.querySelector('[data-testid="connection-indicator"]');
      return (
        el?.getAttribute('data-state') === 'connected' &&
        el.getAttribute('data-node-id') &&
        el.getAttribute('data-node-id') !== notNode &&
        !document.querySelector('.empty--loading')
      );
    },
    notNode ?? null,
    { timeout },
  );
}

export async function indicator(page) {
  return page.getByTestId('connection-indicator').evaluate((el) => ({
    state: el.getAttribute('data-state'),
    nodeId: el.getAttribute('data-node-id'),
  }));
}

/** The conversation the page shows: its address, `/c/{sessionId}`. */
export async function sessionIdOf(page) {
  const match = /^\/c\/([^/]+)$/.exec(new URL(page.url()).pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

/** Types `text`, presses Enter, and returns the id of the answer that starts streaming. */
export async function ask(page, text) {
  const before = await page.locator('[data-testid="message"][data-role="assistant"]').count();
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-input').press('Enter');
  const answer = page.locator('[data-testid="message"][data-role="assistant"]').nth(before);
  await answer.waitFor({ timeout: 15_000 });
  return answer.getAttribute('data-message-id');
}

/** What the page shows for message `id`: its data attributes and visible text. */
export async function shown(page, id) {
  return page.evaluate((id) => {
    const el = document.querySelector(`[data-testid="message"][data-message-id="${id}"]`);
    if (!el) return null;
    const body = el.querySelector('.markdown, .message__text');
    return {
      status: el.getAttribute('data-status'),
      length: Number(el.getAttribute('data-content-length')),
      hash: el.getAttribute('data-content-hash'),
      text: body ? body.innerText : '',
      copies: document.querySelectorAll(`[data-message-id="${id}"]`).length,
      cursor: !!el.querySelector('[data-testid="streaming-cursor"]'),
      cancelledBadge: !!el.querySelector('[data-testid="badge-cancelled"]'),
    };
  }, id);
}

/** Waits until message `id` reaches a final status; returns it as shown. */
export async function waitFinal(page, id, { timeout = 60_000 } = {}) {
  await page.waitForFunction(
    (id) => {
      const el = document.querySelector(`[data-testid="message"][data-message-id="${id}"]`);
      return el && el.getAttribute('data-status') !== 'streaming';
    },
    id,
    { timeout, polling: 100 },
  );
  return shown(page, id);
}

/** Waits until message `id` holds at least `chars` characters. */
export async function waitLength(page, id, chars, { timeout = 20_000 } = {}) {
  await page.waitForFunction(
    ([id, chars]) => {
      const el = document.querySelector(`[data-testid="message"][data-message-id="${id}"]`);
      return el && Number(el.getAttribute('data-content-length')) >= chars;
    },
    [id, chars],
    { timeout, polling: 50 },
  );
}

/** GET /api/history/{session}: the server's stored conversation (as `token`'s user, if given). */
export async function serverHistory(sessionId, token) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(`${BASE_URL}/api/history/${encodeURIComponent(sessionId)}`, { headers });
  if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
  return response.json();
}

/** The same FNV-1a hash as src/lib/hash.ts. */
export function contentHash(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, '0');
}

/**
 * The visible text a Markdown answer should show for `content`, loosely: emphasis and code
 * marks removed, whitespace collapsed. Compared against the rendered text, also collapsed.
 */
export function visibleText(content) {
  return collapse(content.replace(/\*\*|`/g, ''));
}

export function collapse(text) {
  return text.replace(/\s+/g, ' ').trim();
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, name);
  await page.screenshot({ path: file });
  return file;
}

/** Runs `body` with a fresh chat page; on failure saves a screenshot and the console log. */
export async function withChat(browser, name, body, options) {
  return withPage(browser, name, body, { ...options, connected: true });
}

/**
 * Runs `body` with a fresh page (connected first when `connected`); on failure saves a
 * screenshot and the console log.
 */
export async function withPage(browser, name, body, { connected = false, ...options } = {}) {
  const { context, page } = await (connected ? openChat : openPage)(browser, options);
  try {
    await body(page, context);
  } catch (error) {
    mkdirSync(ARTIFACT_DIR, { recursive: true });
    const file = path.join(ARTIFACT_DIR, `${name.replace(/\W+/g, '-')}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    console.error(`# failure screenshot: ${file}`);
    for (const line of page.consoleLog.slice(-30)) console.error(`# ${line}`);
    throw error;
  } finally {
    await context.close();
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The sidebar's conversation titles, top to bottom. */
export async function conversationTitles(page) {
  return page.$$eval('[data-testid="conversation-title"]', (els) => els.map((e) => e.textContent));
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core on the page as it is now; returns its serious and critical violations as
 * "rule: target" lines (empty: none). WCAG 2.1 A and AA rules, plus axe's best practices.
 */
export async function audit(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: AXE_SOURCE });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      resultTypes: ['violations'],
    });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' ')) }));
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .flatMap((v) => v.targets.map((t) => `${v.id} (${v.impact}): ${t}`));
}
