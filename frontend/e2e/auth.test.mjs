// Browser tests against a stack that requires tokens (AUTH_MODE=required: one gateway serving
// the app, one AI node, Redis), started by scripts/e2e-browser. The tokens come from the
// documented way to mint them, `ws-gateway token --user NAME`, with the stack's JWT_SECRET.
//
// Environment (set by scripts/e2e-browser), besides helpers.mjs's:
//   E2E_TOKEN_ALICE, E2E_TOKEN_BOB   tokens for users alice and bob

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ask,
  launchBrowser,
  screenshot,
  serverHistory,
  sessionIdOf,
  waitConnected,
  waitFinal,
  withPage,
} from './helpers.mjs';

const ALICE = process.env.E2E_TOKEN_ALICE;
const BOB = process.env.E2E_TOKEN_BOB;
assert.ok(ALICE && BOB, 'E2E_TOKEN_ALICE and E2E_TOKEN_BOB are set (scripts/e2e-browser sets them)');

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Submits `token` on the sign-in step. */
async function signIn(page, token) {
  await page.getByTestId('token-input').fill(token);
  await page.getByTestId('sign-in-button').click();
}

/** alice's conversation, shared by the tests below: they run in order. */
let alicesSession;

test('the page asks for a token, refuses a bad one, then chats as the token’s user', { timeout: 120_000 }, async () => {
  await withPage(browser, 'sign-in', async (page) => {
    await page.getByTestId('token-input').waitFor({ timeout: 20_000 });
    assert.equal(await page.getByTestId('chat-input').count(), 0, 'no chat before signing in');
    await screenshot(page, 'sign-in.png');

    await signIn(page, 'not-a-token');
    await page.getByTestId('sign-in-error').waitFor({ timeout: 10_000 });
    assert.equal(await page.getByTestId('chat-input').count(), 0, 'still no chat');

    await signIn(page, ALICE);
    await waitConnected(page);
    const id = await ask(page, 'hello');
    assert.equal((await waitFinal(page, id)).status, 'completed');
    alicesSession = await sessionIdOf(page);

    // The server stored it as alice's, and only alice may read it.
    const history = await serverHistory(alicesSession, ALICE);
    assert.deepEqual(
      history.messages.map((m) => [m.role, m.userId]),
      [
        ['user', 'alice'],
        ['assistant', 'alice'],
      ],
    );
    await assert.rejects(serverHistory(alicesSession), /HTTP 401/);
    await assert.rejects(serverHistory(alicesSession, BOB), /HTTP 403/);

    // A reload keeps the tab signed in (the token lives in sessionStorage) and the conversation.
    await page.reload();
    await waitConnected(page);
    assert.equal(await sessionIdOf(page), alicesSession);
    await page.locator(`[data-testid="message"][data-message-id="${id}"]`).waitFor({ timeout: 10_000 });
  });
});

test('another user pointed at alice’s conversation sees none of it and gets a new one', { timeout: 120_000 }, async () => {
  assert.ok(alicesSession, 'the first test ran');
  const before = await serverHistory(alicesSession, ALICE);
  await withPage(
    browser,
    'forbidden',
    async (page) => {
      await signIn(page, BOB);
      await page.locator('[data-testid="notice"][data-code="SESSION_FORBIDDEN"]').waitFor({ timeout: 20_000 });
      await waitConnected(page);
      const bobsSession = await sessionIdOf(page);
      assert.notEqual(bobsSession, alicesSession, 'the page moved to a new conversation');
      assert.equal(await page.locator('[data-testid="message"]').count(), 0, 'nothing of alice’s is shown');
      const id = await ask(page, 'my own question');
      assert.equal((await waitFinal(page, id)).status, 'completed');
      assert.equal((await serverHistory(bobsSession, BOB)).messages.length, 2);
    },
    {
      // The tab remembers alice's conversation as its own (as if bob signed in on her computer).
      beforeGoto: (page) =>
        page.addInitScript((session) => {
          if (!sessionStorage.getItem('e2e.seeded')) {
            sessionStorage.setItem('e2e.seeded', '1');
            localStorage.setItem('chat.sessionId', session);
          }
        }, alicesSession),
    },
  );
  const afterwards = await serverHistory(alicesSession, ALICE);
  assert.deepEqual(afterwards, before, 'alice’s conversation is unchanged');
});
