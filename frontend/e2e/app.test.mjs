// Browser tests of the app people use every day, against the real multi-node stack (started by
// scripts/e2e-browser): the conversations sidebar, answer actions, drafts, dark mode, the
// narrow layout, auto-scroll, keyboard-only use, the screen-reader announcement and an axe-core
// audit of the main views. Also writes the screenshots docs/img/app-light.png, app-dark.png and
// app-narrow.png. Each test opens its own browser context (own localStorage: own conversations).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ask,
  audit,
  BASE_URL,
  contentHash,
  conversationTitles,
  launchBrowser,
  screenshot,
  serverHistory,
  sessionIdOf,
  shown,
  waitConnected,
  waitFinal,
  waitLength,
  withChat,
} from './helpers.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** The user id this browser context chats as (dev mode: its own, from localStorage). */
const userIdOf = (page) => page.evaluate(() => localStorage.getItem('chat.userId'));

async function serverSessions(userId) {
  const response = await fetch(`${BASE_URL}/api/sessions?user_id=${encodeURIComponent(userId)}`);
  if (!response.ok) throw new Error(`sessions: HTTP ${response.status}`);
  return (await response.json()).sessions;
}

/** Polls `check` until it returns a truthy value, for at most `timeout` ms. */
async function eventually(check, { timeout = 15_000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('conversations: listed, switched mid-answer, in the address, filtered and deleted', { timeout: 180_000 }, async () => {
  await withChat(browser, 'conversations', async (page) => {
    const first = await sessionIdOf(page);
    assert.equal(new URL(page.url()).pathname, `/c/${first}`, 'the address names the conversation');
    const a1 = await ask(page, 'Hello there');
    await waitFinal(page, a1);

    await page.getByTestId('new-chat-button').click();
    await page.waitForURL((url) => url.pathname !== `/c/${first}`);
    await waitConnected(page);
    const second = await sessionIdOf(page);
    assert.equal(new URL(page.url()).pathname, `/c/${second}`);
    // A long answer (2,000+ words at 60 ms a word): still streaming when we come back to it.
    const a2 = await ask(page, 'Give me a long answer');
    await waitLength(page, a2, 30);

    // Both listed, newest first, the open one marked; the new one shows before SQL lists it.
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation"]').length === 2);
    assert.deepEqual(await conversationTitles(page), ['Give me a long answer', 'Hello there']);
    assert.equal(await page.locator('[aria-current="page"]').getAttribute('href'), `/c/${second}`);

    // Switch away while the answer streams, and back: it is still there, and it completes.
    await page.getByRole('link', { name: /Hello there/ }).click();
    await page.waitForURL(`**/c/${first}`);
    await waitConnected(page);
    assert.equal((await shown(page, a1)).status, 'completed');
    assert.equal(await shown(page, a2), null, 'the other conversation’s answer is not shown here');
    await page.goBack();
    await page.waitForURL(`**/c/${second}`);
    await waitConnected(page);
    const back = await shown(page, a2);
    assert.equal(back.status, 'streaming', 'the answer is still streaming, shown at once');
    assert.ok(back.length > 0, 'with the part written while we were away');
    await waitLength(page, a2, back.length + 20);
    await page.getByTestId('stop-button').click();
    const done = await waitFinal(page, a2);
    assert.equal(done.status, 'cancelled');
    const stored = (await serverHistory(second)).messages.find((m) => m.messageId === a2);
    assert.equal(done.hash, contentHash(stored.content), 'the answer ended with the stored text');

    // A reload, and a link, open the conversation they name.
    await page.reload();
    await waitConnected(page);
    assert.equal(await sessionIdOf(page), second);
    await page.goto(`${BASE_URL}/c/${first}`);
    await waitConnected(page);
    await page.locator(`[data-message-id="${a1}"]`).waitFor();

    // The server lists both for this user.
    const user = await userIdOf(page);
    await eventually(async () => (await serverSessions(user)).length === 2, { what: 'GET /api/sessions to list both' });

    // Filter by title.
    await page.getByTestId('conversation-filter').fill('LONG');
    assert.deepEqual(await conversationTitles(page), ['Give me a long answer']);
    await page.getByTestId('conversation-filter').fill('');

    // Delete the open one, after confirming: gone from the list and from the server; a new
    // conversation opens in its place.
    await page.getByRole('button', { name: 'Delete “Hello there”' }).click();
    const dialog = page.getByRole('alertdialog');
    await dialog.waitFor();
    await screenshot(page, 'app-delete.png');
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await dialog.waitFor({ state: 'detached' });
    assert.deepEqual(await conversationTitles(page), ['Give me a long answer']);
    await page.waitForURL((url) => url.pathname !== `/c/${first}`);
    assert.equal((await serverHistory(first)).messages.length, 0, 'its history is gone');
    await eventually(async () => {
      const ids = (await serverSessions(user)).map((s) => s.session_id);
      return ids.length === 1 && ids[0] === second;
    }, { what: 'GET /api/sessions to drop the deleted one' });
  });
});

test('answers: Stop, then Retry asks again; Copy copies the stored text', { timeout: 120_000 }, async () => {
  await withChat(
    browser,
    'answer-actions',
    async (page) => {
      const id = await ask(page, 'Walk me through the workflow');
      await page.getByTestId('stop-button').click();
      assert.equal((await waitFinal(page, id)).status, 'cancelled');
      const answer = page.locator(`[data-message-id="${id}"]`);
      await answer.getByTestId('retry-answer').click();
      const retried = page.locator('[data-testid="message"][data-role="assistant"]').nth(1);
      await retried.waitFor();
      const retriedId = await retried.getAttribute('data-message-id');
      const final = await waitFinal(page, retriedId);
      assert.equal(final.status, 'completed');
      const history = await serverHistory(await sessionIdOf(page));
      const prompts = history.messages.filter((m) => m.role === 'user').map((m) => m.content);
      assert.deepEqual(prompts, ['Walk me through the workflow', 'Walk me through the workflow']);

      await page.locator(`[data-message-id="${retriedId}"]`).getByTestId('copy-answer').click();
      await page.locator(`[data-message-id="${retriedId}"]`).getByText('Copied').waitFor();
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      const stored = history.messages.find((m) => m.messageId === retriedId);
      assert.equal(copied, stored.content);
    },
    {
      permissions: ['clipboard-read', 'clipboard-write'],
    },
  );
});

test('drafts are kept per conversation, across switching and reloads', { timeout: 60_000 }, async () => {
  await withChat(browser, 'drafts', async (page) => {
    const first = await sessionIdOf(page);
    await page.getByTestId('chat-input').fill('a half-written question');
    await page.getByTestId('new-chat-button').click();
    await page.waitForURL((url) => url.pathname !== `/c/${first}`);
    await waitConnected(page);
    assert.equal(await page.getByTestId('chat-input').inputValue(), '');
    await page.goBack();
    await waitConnected(page);
    assert.equal(await page.getByTestId('chat-input').inputValue(), 'a half-written question');
    await page.reload();
    await waitConnected(page);
    assert.equal(await page.getByTestId('chat-input').inputValue(), 'a half-written question');
  });
});

test('dark mode follows the system, the toggle overrides it and is remembered', { timeout: 60_000 }, async () => {
  await withChat(
    browser,
    'dark-mode',
    async (page) => {
      const background = () => page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
      const luminance = (rgb) => {
        const [r, g, b] = rgb.match(/\d+/g).map(Number);
        return (r + g + b) / 3;
      };
      assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
      assert.ok(luminance(await background()) < 60, `dark background: ${await background()}`);
      const id = await ask(page, 'Give me a technical deep dive');
      await waitFinal(page, id);
      await screenshot(page, 'app-dark.png');
      assert.deepEqual(await audit(page), [], 'axe: no serious or critical violation (dark)');

      const toggle = page.getByRole('button', { name: 'Dark mode' });
      assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
      await toggle.click();
      assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
      assert.ok(luminance(await background()) > 200, `light background: ${await background()}`);
      await page.reload();
      await waitConnected(page);
      assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light', 'the pick is kept');
    },
    { colorScheme: 'dark' },
  );
});

test('the light layout passes the axe audit, with the delete dialog open too', { timeout: 120_000 }, async () => {
  await withChat(browser, 'light', async (page) => {
    assert.deepEqual(await audit(page), [], 'axe: empty conversation');
    const id = await ask(page, 'Give me a technical deep dive');
    await waitFinal(page, id);
    await page.getByTestId('new-chat-button').click();
    await waitConnected(page);
    const other = await ask(page, 'How is Redis used?');
    await waitFinal(page, other);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation"]').length === 2);
    await screenshot(page, 'app-light.png');
    assert.deepEqual(await audit(page), [], 'axe: a conversation with the sidebar');
    await page.getByRole('button', { name: /^Delete “/ }).first().click();
    await page.getByRole('alertdialog').waitFor();
    assert.deepEqual(await audit(page), [], 'axe: the delete dialog');
    await page.keyboard.press('Escape');
    await page.getByRole('alertdialog').waitFor({ state: 'detached' });
  });
});

test('at 360 px wide: no sideways scrolling, the sidebar is a drawer, chatting works', { timeout: 120_000 }, async () => {
  await withChat(
    browser,
    'narrow',
    async (page) => {
      const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      const sidebar = page.getByRole('navigation', { name: 'Conversations' });
      assert.equal(await sidebar.isVisible(), false, 'the sidebar is closed');
      const id = await ask(page, 'Explain the streaming architecture');
      await waitFinal(page, id);
      assert.equal(await overflow(), 0, 'nothing wider than the screen');
      await screenshot(page, 'app-narrow.png');
      assert.deepEqual(await audit(page), [], 'axe: narrow');

      // The drawer from the keyboard: the menu button, the focus moves in, Escape gives it back.
      const menu = page.getByRole('button', { name: 'Conversations' });
      await menu.focus();
      await page.keyboard.press('Enter');
      await sidebar.waitFor({ state: 'visible' });
      await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'conversation-filter');
      await page.keyboard.press('Escape');
      await sidebar.waitFor({ state: 'hidden' });
      await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'sidebar-toggle');

      await menu.click();
      await sidebar.waitFor({ state: 'visible' });
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation"]').length === 1);
      assert.deepEqual(await audit(page), [], 'axe: narrow, drawer open');
      // Slid all the way in (0.2 s) before the picture.
      await page.waitForFunction(() => document.querySelector('[data-testid="sidebar"]').getBoundingClientRect().left === 0);
      await screenshot(page, 'app-narrow-drawer.png');
      // While it is open, Tab never reaches the page behind it.
      for (let i = 0; i < 6; i += 1) {
        await page.keyboard.press('Tab');
        const behind = await page.evaluate(() => !!document.activeElement?.closest('.app__main'));
        assert.ok(!behind, 'the focus never goes behind the drawer');
      }
      await page.getByRole('link', { name: /Explain the streaming/ }).click();
      await sidebar.waitFor({ state: 'hidden' });
      assert.equal(await overflow(), 0);
    },
    { viewport: { width: 360, height: 740 } },
  );
});

test('auto-scroll stops when the reader scrolls up; "Jump to latest" brings them back', { timeout: 120_000 }, async () => {
  await withChat(
    browser,
    'auto-scroll',
    async (page) => {
      const list = page.getByTestId('message-list');
      const gap = () => list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
      const first = await ask(page, 'Give me a technical deep dive');
      await waitFinal(page, first);
      const id = await ask(page, 'Give me a technical deep dive');
      await waitLength(page, id, 200);
      assert.ok((await gap()) < 80, 'pinned to the bottom while streaming');
      await list.evaluate((el) => el.scrollTo({ top: 0 }));
      await page.getByTestId('jump-latest').waitFor();
      const length = (await shown(page, id)).length;
      await waitLength(page, id, length + 100);
      assert.equal(await list.evaluate((el) => el.scrollTop), 0, 'left where the reader put it');
      await page.getByTestId('jump-latest').click();
      await page.getByTestId('jump-latest').waitFor({ state: 'detached' });
      const now = (await shown(page, id)).length;
      await waitLength(page, id, now + 50);
      assert.ok((await gap()) < 80, 'pinned again, following the answer');
      await waitFinal(page, id);
    },
    { viewport: { width: 1280, height: 600 } },
  );
});

test('keyboard only: ask, switch conversations and delete one, with the focus always visible', { timeout: 120_000 }, async () => {
  await withChat(browser, 'keyboard', async (page) => {
    const focused = () =>
      page.evaluate(() => {
        const el = document.activeElement;
        const style = getComputedStyle(el);
        return {
          testid: el.getAttribute('data-testid'),
          tag: el.tagName,
          name: el.getAttribute('aria-label') ?? el.textContent.trim().slice(0, 40),
          visible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
        };
      });
    /** Presses Tab until `match` is focused; every element on the way must show its focus. */
    async function tabTo(match, { back = false, max = 40 } = {}) {
      for (let i = 0; i < max; i += 1) {
        await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
        const now = await focused();
        if (now.tag !== 'BODY') assert.ok(now.visible, `focus is visible on ${now.tag} ${now.testid ?? now.name}`);
        if (match(now)) return now;
      }
      throw new Error('never reached the element by Tab');
    }

    // The composer has the focus when a conversation opens.
    assert.equal((await focused()).testid, 'chat-input');
    await page.keyboard.type('Hello there');
    await page.keyboard.press('Enter');
    const answer = page.locator('[data-testid="message"][data-role="assistant"]').first();
    await answer.waitFor();
    const first = await answer.getAttribute('data-message-id');
    await waitFinal(page, first);

    // New chat, from the keyboard.
    await tabTo((f) => f.testid === 'new-chat-button', { back: true });
    await page.keyboard.press('Enter');
    await waitConnected(page);
    assert.equal((await focused()).testid, 'chat-input');
    await page.keyboard.type('How is Redis used?');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="message"][data-role="assistant"]').first().waitFor();
    await waitFinal(page, await page.locator('[data-testid="message"][data-role="assistant"]').first().getAttribute('data-message-id'));

    // Back to the first conversation through the sidebar.
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation"]').length === 2);
    await tabTo((f) => f.tag === 'A' && f.name.startsWith('Hello there'), { back: true });
    await page.keyboard.press('Enter');
    await page.locator(`[data-message-id="${first}"]`).waitFor();

    // Delete the other one: its button, the dialog (focus on Cancel, Tab to Delete), Enter.
    await tabTo((f) => f.testid === 'delete-conversation' && f.name.includes('Redis'), { back: true });
    await page.keyboard.press('Enter');
    await page.getByRole('alertdialog').waitFor();
    assert.equal((await focused()).name, 'Cancel');
    await page.keyboard.press('Tab');
    assert.equal((await focused()).testid, 'confirm-accept');
    await page.keyboard.press('Enter');
    await page.getByRole('alertdialog').waitFor({ state: 'detached' });
    assert.deepEqual(await conversationTitles(page), ['Hello there']);
    // The focus stays in the sidebar (its filter), not lost to the page's body.
    await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'conversation-filter');
    assert.ok((await focused()).visible);
  });
});

test('a finished answer is announced once to screen readers, not per chunk', { timeout: 60_000 }, async () => {
  await withChat(browser, 'announce', async (page) => {
    await page.evaluate(() => {
      const region = document.querySelector('[data-testid="announcer"]');
      window.__announcements = [];
      new MutationObserver(() => window.__announcements.push(region.textContent)).observe(region, {
        childList: true,
        subtree: true,
        characterData: true,
      });
    });
    const id = await ask(page, 'Hello there');
    await waitLength(page, id, 100);
    assert.deepEqual(await page.evaluate(() => window.__announcements), [], 'nothing while it streams');
    await waitFinal(page, id);
    await page.waitForFunction(() => window.__announcements.length > 0);
    assert.deepEqual(await page.evaluate(() => window.__announcements), ['The answer is complete.']);
    assert.equal(await page.getByTestId('announcer').getAttribute('aria-live'), 'polite');
    const log = page.getByRole('log', { name: 'Conversation' });
    assert.equal(await log.getAttribute('aria-live'), 'off', 'the streaming text itself is not read out');
  });
});
