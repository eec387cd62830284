// Browser tests against a real stack (NGINX + 3 gateways + 3 AI nodes + Redis), started by
// scripts/e2e-browser. Each test opens its own browser context, hence its own conversation.
// They run in order; the last two kill a gateway, then an AI node.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ask,
  BASE_URL,
  collapse,
  contentHash,
  indicator,
  launchBrowser,
  screenshot,
  serverHistory,
  sessionIdOf,
  shown,
  sleep,
  STACK_DIR,
  visibleText,
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

/** Asserts that the page shows exactly the text the server stored for answer `id`. */
async function assertMatchesHistory(page, id) {
  const sessionId = await sessionIdOf(page);
  const history = await serverHistory(sessionId);
  const stored = history.messages.find((m) => m.messageId === id);
  assert.ok(stored, `answer ${id} is in GET /api/history/${sessionId}`);
  assert.equal(stored.isComplete, true);
  const onPage = await shown(page, id);
  assert.equal(onPage.copies, 1, 'the answer is shown once');
  assert.equal(onPage.status, stored.status);
  assert.equal(onPage.length, stored.content.length, 'same length as the stored text');
  assert.equal(onPage.hash, contentHash(stored.content), 'same text as the stored one');
  // The page's message list is the stored conversation, in order, each message once.
  const pageIds = await page.$$eval('[data-testid="message"]', (els) => els.map((e) => e.dataset.messageId));
  assert.deepEqual(pageIds, history.messages.map((m) => m.messageId));
  return { stored, onPage };
}

test('an answer streams in word by word and ends with the stored text', { timeout: 120_000 }, async () => {
  await withChat(browser, 'streams', async (page) => {
    const id = await ask(page, 'hello');
    // Sample the length while it streams: it must grow step by step, with the cursor shown.
    const lengths = [];
    let sawCursor = false;
    for (let i = 0; i < 200; i += 1) {
      const s = await shown(page, id);
      if (s.status !== 'streaming') break;
      sawCursor ||= s.cursor;
      if (lengths.at(-1) !== s.length) lengths.push(s.length);
      await sleep(50);
    }
    assert.ok(lengths.length >= 5, `text grew over time (lengths seen: ${lengths.join(',')})`);
    assert.deepEqual([...lengths].sort((a, b) => a - b), lengths, 'text only ever grows');
    assert.ok(sawCursor, 'a cursor is shown while the answer streams');

    const final = await waitFinal(page, id);
    assert.equal(final.status, 'completed');
    assert.equal(final.cursor, false);
    const { stored } = await assertMatchesHistory(page, id);
    assert.equal(collapse(final.text), visibleText(stored.content), 'rendered text is the Markdown of the answer');
    assert.equal(await page.locator('.markdown strong').first().textContent(), 'streaming architecture');

    // A second answer in the same conversation, with a code block; screenshot it mid-stream.
    const second = await ask(page, 'Give me a technical deep dive');
    assert.notEqual(second, id);
    await page.locator(`[data-message-id="${second}"] .code-block`).waitFor({ timeout: 20_000 });
    await page.getByText('Because the subscription is confirmed').waitFor({ timeout: 20_000 });
    assert.equal((await shown(page, second)).status, 'streaming');
    await screenshot(page, 'streaming.png');
    assert.equal((await waitFinal(page, second)).status, 'completed');
    await assertMatchesHistory(page, second);
    assert.equal((await shown(page, id)).status, 'completed', 'the first answer is untouched');
  });
});

test('reloading mid-answer shows the partial answer at once and completes it', { timeout: 120_000 }, async () => {
  await withChat(browser, 'reload', async (page) => {
    const id = await ask(page, 'What happens if I reload the page?');
    await waitLength(page, id, 120);
    const before = await shown(page, id);
    assert.equal(before.status, 'streaming');

    await page.reload();
    // The first time the answer appears after the reload, it already holds what was shown
    // before (the history frame's in-flight content), and is still streaming.
    const first = await page.waitForFunction(
      (id) => {
        const el = document.querySelector(`[data-testid="message"][data-message-id="${id}"]`);
        return el && { status: el.dataset.status, length: Number(el.dataset.contentLength) };
      },
      id,
      { polling: 'raf', timeout: 20_000 },
    );
    const firstSeen = await first.jsonValue();
    assert.equal(firstSeen.status, 'streaming', 'the answer is still streaming after the reload');
    assert.ok(
      firstSeen.length >= before.length,
      `partial answer shown at once (${firstSeen.length} chars, ${before.length} before the reload)`,
    );

    await waitConnected(page);
    const final = await waitFinal(page, id);
    assert.equal(final.status, 'completed');
    const { stored } = await assertMatchesHistory(page, id);
    assert.equal(collapse(final.text), visibleText(stored.content));
  });
});

test('Stop, pressed before the first chunk, ends the answer with [Cancelled] and a cancelled badge', { timeout: 120_000 }, async () => {
  // The page's socket goes through playwright, which holds the answer's frames back until Stop
  // was pressed: the page has only the `accepted` frame to offer Stop by. (Stop mid-answer is
  // pressed in the error frames test.)
  let acceptedFrame;
  const cancels = [];
  const gate = { open: false, held: [] };
  const beforeGoto = (page) =>
    page.routeWebSocket(/\/ws\/chat/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((text) => {
        const frame = parseFrame(text);
        if (frame?.type === 'cancel') cancels.push(frame.messageId);
        server.send(text);
      });
      server.onMessage((text) => {
        const frame = parseFrame(text);
        if (frame?.type === 'accepted') acceptedFrame = frame;
        if (!gate.open && frame?.type === 'message' && frame.data?.role === 'assistant') {
          gate.held.push(() => ws.send(text));
        } else {
          ws.send(text);
        }
      });
    });
  await withChat(
    browser,
    'stop',
    async (page) => {
      await page.getByTestId('chat-input').fill('How is Redis used?');
      await page.getByTestId('chat-input').press('Enter');
      await page.getByTestId('stop-button').waitFor({ timeout: 15_000 });
      assert.ok(acceptedFrame, 'Stop is offered once the chat is accepted');
      assert.equal(
        await page.locator('[data-testid="message"][data-role="assistant"]').count(),
        0,
        'no answer chunk has reached the page yet',
      );
      await page.getByTestId('stop-button').click();
      for (let i = 0; i < 100 && cancels.length === 0; i += 1) await sleep(50);
      const id = acceptedFrame.messageId;
      assert.deepEqual(cancels, [id], 'the cancel names the accepted answer');
      gate.open = true;
      for (const send of gate.held.splice(0)) send();
      const final = await waitFinal(page, id, { timeout: 10_000 });
      assert.equal(final.status, 'cancelled');
      assert.ok(final.cancelledBadge, 'the cancelled badge is shown');
      assert.match(final.text, /\[Cancelled\]$/);
      const { stored } = await assertMatchesHistory(page, id);
      assert.match(stored.content, /\n\n\[Cancelled\]$/);
      // The composer is back to Send.
      await page.getByTestId('send-button').waitFor();
      assert.equal(await page.getByTestId('stop-button').count(), 0);

      // New chat: a new session id, an empty conversation, a fresh connection.
      const oldSession = await sessionIdOf(page);
      await page.getByTestId('new-chat-button').click();
      await page.waitForURL((url) => url.pathname !== `/c/${oldSession}`);
      const newSession = await sessionIdOf(page);
      assert.match(newSession, /^[A-Za-z0-9_-]{1,64}$/);
      await waitConnected(page);
      assert.equal(await page.locator('[data-testid="message"]').count(), 0);
      await page.reload();
      await waitConnected(page);
      assert.equal(await sessionIdOf(page), newSession, 'the new session survives a reload');
    },
    { beforeGoto },
  );
});

function parseFrame(text) {
  try {
    return JSON.parse(typeof text === 'string' ? text : text.toString());
  } catch {
    return null;
  }
}

test('error frames from the server are shown to the user', { timeout: 120_000 }, async () => {
  // The page never sends a chat while an answer streams, nor a blank one. To get the real
  // server's refusals onto the page, the test speaks on the page's own socket (proxied
  // through playwright) as a misbehaving client would.
  let server;
  const beforeGoto = (page) =>
    page.routeWebSocket(/\/ws\/chat/, (ws) => {
      server = ws.connectToServer();
    });
  await withChat(
    browser,
    'errors',
    async (page) => {
      const id = await ask(page, 'What is the workflow of a message?');
      await waitLength(page, id, 20);
      server.send(JSON.stringify({ type: 'chat', message: 'a second question' }));
      await page.locator('[data-testid="notice"][data-code="STREAM_ACTIVE"]').waitFor({ timeout: 10_000 });
      server.send(JSON.stringify({ type: 'chat', message: '   ' }));
      await page.locator('[data-testid="notice"][data-code="INVALID_MESSAGE"]').waitFor({ timeout: 10_000 });
      assert.equal((await shown(page, id)).status, 'streaming', 'the answer goes on');
      await page.locator('[data-testid="notice"][data-code="STREAM_ACTIVE"] button').click();
      assert.equal(await page.locator('[data-testid="notice"]').count(), 1, 'a notice can be dismissed');
      await page.getByTestId('stop-button').click();
      assert.equal((await waitFinal(page, id, { timeout: 10_000 })).status, 'cancelled');
    },
    { beforeGoto },
  );
});

test('a second tab on the same conversation sees the same answer stream', { timeout: 120_000 }, async () => {
  await withChat(browser, 'two-tabs', async (page, context) => {
    const other = await context.newPage();
    await other.goto(BASE_URL);
    await waitConnected(other);
    assert.equal(await sessionIdOf(other), await sessionIdOf(page));
    const id = await ask(page, 'Tell me about websocket streaming');
    await waitLength(other, id, 20);
    assert.equal((await shown(other, id)).status, 'streaming');
    assert.equal(await other.getByTestId('stop-button').count(), 1, 'the other tab can stop it too');
    const [a, b] = await Promise.all([waitFinal(page, id), waitFinal(other, id)]);
    assert.equal(a.status, 'completed');
    assert.equal(a.hash, b.hash);
    await assertMatchesHistory(other, id);
  });
});

test('the connection status panel shows the serving gateway and the ping round trip', { timeout: 60_000 }, async () => {
  await withChat(browser, 'status-panel', async (page) => {
    const toggle = page.getByRole('button', { name: 'Connection status' });
    assert.equal(await toggle.getAttribute('aria-expanded'), 'false', 'closed by default');
    await toggle.click();
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    const node = await page.getByTestId('status-node').textContent();
    assert.match(node, /^ws-/);
    assert.equal(node, (await indicator(page)).nodeId, 'the node of the current socket');
    assert.equal(await page.getByTestId('status-state').textContent(), 'open');
    // Opening it sent a ping; the gateway's pong gives the round trip.
    await page.waitForFunction(
      () => /^\d+(\.\d)? ms$/.test(document.querySelector('[data-testid="status-latency"]')?.textContent ?? ''),
      null,
      { timeout: 10_000 },
    );
  });
});

test('when its gateway dies, the page reconnects to another one and the answer completes', { timeout: 120_000 }, async () => {
  await withChat(browser, 'gateway-killed', async (page) => {
    const id = await ask(page, 'Explain the streaming architecture');
    await waitLength(page, id, 80);
    const { nodeId } = await indicator(page);
    const n = /^ws-node-(\d+)$/.exec(nodeId)?.[1];
    assert.ok(n, `node id looks like ws-node-N: ${nodeId}`);
    const pid = Number(readFileSync(path.join(STACK_DIR, 'pids', `gateway-${n}`), 'utf8').trim());
    process.kill(pid, 'SIGKILL');

    await page.waitForFunction(
      () => document.querySelector('[data-testid="connection-indicator"]')?.getAttribute('data-state') === 'reconnecting',
      null,
      { timeout: 10_000, polling: 50 },
    );
    const during = await shown(page, id);
    assert.ok(during.length > 0, 'the partial answer stays on screen while reconnecting');
    await screenshot(page, 'reconnecting.png');

    await waitConnected(page, { notNode: nodeId, timeout: 30_000 });
    const now = await indicator(page);
    assert.notEqual(now.nodeId, nodeId, `moved from ${nodeId} to ${now.nodeId}`);
    const final = await waitFinal(page, id);
    assert.equal(final.status, 'completed');
    const { stored } = await assertMatchesHistory(page, id);
    assert.equal(collapse(final.text), visibleText(stored.content));
  });
});

test('when the AI node writing an answer is killed, the answer ends failed, says why, and Retry asks again', { timeout: 120_000 }, async () => {
  // The AI node that took the chat is named in the `accepted` frame the page receives.
  const accepted = [];
  const beforeGoto = (page) =>
    page.on('websocket', (ws) =>
      ws.on('framereceived', ({ payload }) => {
        const frame = parseFrame(payload);
        if (frame?.type === 'accepted') accepted.push(frame);
      }),
    );
  await withChat(
    browser,
    'ai-node-killed',
    async (page) => {
      const id = await ask(page, 'Give me a technical deep dive');
      await waitLength(page, id, 40);
      const nodeId = accepted.find((f) => f.messageId === id)?.nodeId;
      const n = /^ai-node-(\d+)$/.exec(nodeId ?? '')?.[1];
      assert.ok(n, `the accepted frame names an AI node: ${nodeId}`);
      const pid = Number(readFileSync(path.join(STACK_DIR, 'pids', `ai-${n}`), 'utf8').trim());
      process.kill(pid, 'SIGKILL');

      // Its lease runs out (STREAM_LEASE_SECONDS, 10 s): the answer ends failed, partial text kept.
      const final = await waitFinal(page, id, { timeout: 60_000 });
      assert.equal(final.status, 'failed');
      assert.ok(final.length > 0, 'the part written before the node died is kept');
      const note = page.locator(`[data-message-id="${id}"] [data-testid="failure-note"]`);
      assert.match(await note.innerText(), /could not be finished[\s\S]*Press Retry/);
      await assertMatchesHistory(page, id);

      // Retry: the same question again, answered by a node that is alive.
      await page.locator(`[data-message-id="${id}"]`).getByTestId('retry-answer').click();
      const retried = page.locator('[data-testid="message"][data-role="assistant"]').nth(1);
      await retried.waitFor({ timeout: 15_000 });
      const again = await waitFinal(page, await retried.getAttribute('data-message-id'));
      assert.equal(again.status, 'completed');
      const history = await serverHistory(await sessionIdOf(page));
      assert.deepEqual(
        history.messages.filter((m) => m.role === 'user').map((m) => m.content),
        ['Give me a technical deep dive', 'Give me a technical deep dive'],
      );
    },
    { beforeGoto },
  );
});
