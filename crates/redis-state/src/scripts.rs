//! The Lua scripts: every multi-key change and every multi-key read is one of these, so Redis
//! runs it as a single step.
//!
//! Every script of a session touches the keys of that session, which share its hash tag (one
//! cluster slot), and its deadline set, which is that slot's on a cluster. Keys derived from a
//! message id that is only known inside the script (the snapshot's chunk log) are built from the
//! session's prefixes passed in ARGV, so they carry the same tag. The scripts over many keys
//! (`CLAIM_MANY`, `RENEW_SOCKETS`) are called with the keys of one slot at a time on a cluster,
//! and `DUE` with the deadline sets of one master.
//!
//! Frames are published with `PUBLISH` on a single Redis and `SPUBLISH` (sharded pub/sub) on a
//! cluster: each script that publishes starts with one of [`PUBLISH`] or [`SPUBLISH`] and calls
//! `redis.call(PUBLISH, ...)`.

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, ToRedisArgs};

/// Lua: the publish command of a single Redis.
const PUBLISH: &str = "local PUBLISH = 'PUBLISH'\n";

/// Lua: the publish command on a cluster: sharded, so a frame reaches only the shard that owns
/// the session's slot (where the gateways subscribed with `SSUBSCRIBE`).
const SPUBLISH: &str = "local PUBLISH = 'SPUBLISH'\n";

/// Lua: the next number in a session's sequence of changes (KEYS: the counter; lifetime in
/// ARGV at `ttl`). Every change that ends up in the SQL outbox (an answer started, an answer
/// ended) takes one here, in the script that makes it, so the numbers follow the order in which
/// the changes really happened, whichever node records them in SQL and however late.
const NEXT_CHANGE: &str = r#"
local function next_change(key, ttl)
  local n = redis.call('INCR', key)
  redis.call('EXPIRE', key, ttl)
  return n
end
"#;

/// Lua: milliseconds on Redis's clock, so that every node measures leases with one clock.
const NOW_MS: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// Lua: whether answer `id` still streams: 0 while it holds the lease (key `active`) and has
/// not been cancelled (key `cancel`), -1 when it was cancelled, -2 when the lease is no longer
/// its. One `MGET`: on the per-chunk path every `redis.call` costs about as much in Redis as
/// the command itself.
const LIVENESS: &str = r#"
local function liveness(active, cancel, id)
  local held = redis.call('MGET', active, cancel)
  if held[1] ~= id then return -2 end
  if held[2] then return -1 end
  return 0
end
"#;

/// Takes the session's stream lease and records the user message, in one step; enters the
/// answer in the deadline set the reaper watches; records (or checks) whose session it is.
///
/// The lease key (`streaming:active:{sid}`) is held until FINISH or FAIL releases it, not until
/// a TTL runs out: liveness is the answer's deadline (now + lease secs, pushed forward by the
/// chunks), and a dead producer's answer is failed by a reaper before the session is free
/// again, so a new chat can never overtake an unfinished one in history. The key's own TTL
/// (live TTL, renewed every 100 chunks) is only a safety net should the deadline set be lost.
///
/// The session's user (`session:user:{sid}`) is set by the first chat and renewed by every
/// chat; with enforcement on, another user's chat is refused.
///
/// A retry of a START that did run (the lease already names this answer) changes nothing and
/// answers as the first run did.
///
/// KEYS: active, history, answer record, channel, deadlines, change counter, session user,
/// unmerged marker, start number.
/// ARGV: answer id, lease secs, user message JSON, answer record JSON, user frame, history TTL,
/// live TTL, deadline member, history check ("1": refuse a session whose history or user Redis
/// does not have; "0": go ahead; "2": go ahead, and mark a session without history unmerged),
/// change counter TTL, user id, "1" to refuse another user's session, session user TTL.
/// Returns `{1, "", change}` when started, `{0, active_message_id, 0}` when the session is
/// busy, `{2, "", 0}` when the history or the session's user is missing (expired or flushed:
/// refill them from SQL first, or the new message would start a history that hides the old
/// one, or hand the session to whoever chats first), `{3, owner, 0}` when the session is
/// another user's.
const START: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return {1, '', tonumber(redis.call('GET', KEYS[9]) or '0')}
end
if ARGV[9] == '1' and (redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[7]) == 0) then
  return {2, '', 0}
end
local owner = redis.call('GET', KEYS[7])
if owner and owner ~= ARGV[11] and ARGV[12] == '1' then return {3, owner, 0} end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[7]) then
  return {0, redis.call('GET', KEYS[1]) or '', 0}
end
if not owner then redis.call('SET', KEYS[7], ARGV[11]) end
redis.call('EXPIRE', KEYS[7], ARGV[13])
if ARGV[9] == '2' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[8], '1', 'EX', ARGV[6])
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[7])
redis.call('ZADD', KEYS[5], now_ms() + 1000 * tonumber(ARGV[2]), ARGV[8])
redis.call(PUBLISH, KEYS[4], ARGV[5])
local change = next_change(KEYS[6], ARGV[10])
redis.call('SET', KEYS[9], change, 'EX', ARGV[7])
return {1, '', change}
"#;

/// Appends chunk `index` to the log and publishes its frame, in one step; pushes the answer's
/// deadline forward, and renews the live TTLs, when asked to.
///
/// KEYS: active, cancel flag, chunk log, channel[, answer record, deadlines].
/// ARGV: answer id, index, delta, frame[, lease secs, live TTL, deadline member].
/// Most chunks pass only the first four keys and arguments; the rest come with a chunk that
/// pushes the deadline (lease secs > 0, "0" leaves it) or renews the live TTL of the log, the
/// record and the lease key (live TTL > 0, "0" leaves them). The producer asks for the first
/// once a fraction of the lease has passed since the deadline last moved (`TIME` and `ZADD` were
/// a quarter of this script's time in Redis), for the second every
/// [`RENEW_LIVE_TTL_EVERY`]th chunk (and the first), so a long answer keeps its keys while a
/// vanished producer's expire on their own. Each key or argument costs Redis about 1,500
/// instructions per call (callgrind), of ~49k for the whole call (docs/BENCHMARKS.md).
/// Returns the index appended (or already there: a retry is harmless), -1 when cancelled,
/// -2 when the lease is no longer this answer's, -3 when `index` would leave a gap.
/// Three commands per common chunk: [`LIVENESS`]'s `MGET`, then the delta is pushed before its
/// index is checked against the length `RPUSH` answers (a retried index or a gap, both rare,
/// takes it off again with `RPOP`), then the frame is published.
const APPEND: &str = r#"
local live = liveness(KEYS[1], KEYS[2], ARGV[1])
if live ~= 0 then return live end
local index = tonumber(ARGV[2])
local len = redis.call('RPUSH', KEYS[3], ARGV[3])
if len ~= index + 1 then
  redis.call('RPOP', KEYS[3])
  if len > index + 1 then return index end
  return -3
end
if #KEYS > 4 then
  if ARGV[6] ~= '0' then
    redis.call('EXPIRE', KEYS[3], ARGV[6])
    redis.call('EXPIRE', KEYS[5], ARGV[6])
    redis.call('EXPIRE', KEYS[1], ARGV[6])
  end
  local lease = tonumber(ARGV[5])
  if lease > 0 then redis.call('ZADD', KEYS[6], now_ms() + 1000 * lease, ARGV[7]) end
end
redis.call(PUBLISH, KEYS[4], ARGV[4])
return index
"#;

/// How often a chunk renews the live TTL of its answer's keys: every this many chunks, from the
/// first.
pub(crate) const RENEW_LIVE_TTL_EVERY: u32 = 100;

/// Lua: the steps every way of ending an answer shares (FINISH and FAIL take the same KEYS and
/// first seven ARGV). Returns 0 and changes nothing but the deadline set when the answer has
/// already ended (or, when it ended with exactly this final message, a retry of an ending that
/// did run, the ending's number again); otherwise appends the final message to history,
/// releases the lease, keeps the record and chunk log for a while, clears the cancel flag,
/// publishes `before` (when given) and then the final frame, and returns the ending's number in
/// the session's changes (>= 1).
///
/// KEYS: active, history, answer record, chunk log, cancel flag, channel, deadlines, change
/// counter, end number.
/// ARGV: answer id, final message JSON, final frame, history TTL, ended TTL, deadline member,
/// change counter TTL.
const END_ANSWER: &str = r#"
local function end_answer(before)
  local record = redis.call('GET', KEYS[3])
  if record then
    local ok, msg = pcall(cjson.decode, record)
    if ok and msg.isComplete then
      redis.call('ZREM', KEYS[7], ARGV[6])
      if record == ARGV[2] then return tonumber(redis.call('GET', KEYS[9]) or '0') end
      return 0
    end
  end
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
  redis.call('DEL', KEYS[5])
  redis.call('ZREM', KEYS[7], ARGV[6])
  if before then redis.call(PUBLISH, KEYS[6], before) end
  redis.call(PUBLISH, KEYS[6], ARGV[3])
  local change = next_change(KEYS[8], ARGV[7])
  redis.call('SET', KEYS[9], change, 'EX', ARGV[5])
  return change
end
"#;

/// Ends an answer (completed, cancelled, or failed by its own producer), in one step. Does
/// nothing when the answer has already ended (a retry, or another node failed it).
///
/// KEYS and ARGV: those of [`END_ANSWER`], then optionally ARGV[8] = an `error` frame published
/// just before the final one (an answer its model server failed).
/// Returns the ending's change number when it ended the answer, 0 when it had already ended.
const FINISH: &str = r#"
return end_answer(ARGV[8])
"#;

/// Pushes a streaming answer's deadline forward while its producer waits without a chunk (a
/// model thinking before its first token), and reports a cancel.
///
/// KEYS: active, cancel flag, deadlines. ARGV: answer id, lease secs, deadline member.
/// Returns 0 when the answer goes on, -1 when cancelled, -2 when the lease is no longer this
/// answer's.
const KEEP_ALIVE: &str = r#"
local live = liveness(KEYS[1], KEYS[2], ARGV[1])
if live ~= 0 then return live end
redis.call('ZADD', KEYS[3], now_ms() + 1000 * tonumber(ARGV[2]), ARGV[3])
return 0
"#;

/// Ends an answer whose producer is gone (its deadline passed without a chunk) as `failed`:
/// like [`FINISH`], but only once the deadline has passed, and publishing an `error` frame
/// before the final one.
///
/// KEYS and ARGV: those of [`END_ANSWER`], then ARGV[8] = the error frame.
/// Returns the ending's change number when it failed the answer, 0 when it had already ended,
/// -1 when its producer is alive after all.
const FAIL: &str = r#"
local deadline = redis.call('ZSCORE', KEYS[7], ARGV[6])
if deadline and tonumber(deadline) > now_ms() then return -1 end
return end_answer(ARGV[8])
"#;

/// Answers whose lease deadline has passed: up to 100 deadline members, each after the set it
/// is in.
///
/// KEYS: a deadline set (the one on a single Redis; on a cluster, the first of the slots one
/// master serves, which routes the call to that master). ARGV: the sets of that master's other
/// slots (a cluster refuses declared keys of several slots, even with the flag that lets a
/// script touch keys of several slots of its node).
/// Returns `{set, member, set, member, ...}`.
const DUE: &str = r#"
local now, due, left = now_ms(), {}, 100
local function scan(key)
  -- pcall: while its slot migrates, a set may not be readable here; the others still are.
  local members = redis.pcall('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, left)
  if type(members) ~= 'table' or members.err then return end
  for _, member in ipairs(members) do
    due[#due + 1] = key
    due[#due + 1] = member
    left = left - 1
  end
end
scan(KEYS[1])
for _, key in ipairs(ARGV) do
  if left == 0 then break end
  scan(key)
end
return due
"#;

/// Script flags for [`DUE`] on a cluster.
const CROSS_SLOT: &str = "#!lua flags=allow-cross-slot-keys\n";

/// Reads history, the active answer, its record and its chunk log, in one step. A caller that
/// already holds the first `known` entries (the last one being message `known_id`) gets only
/// the entries after them, when those are still the list's first entries.
///
/// KEYS: history, active, unmerged marker. ARGV: record prefix, chunk log prefix, known,
/// known_id.
/// Returns `{entries, from, len, unmerged}` or `{entries, from, len, unmerged, answer id,
/// record or nil, chunks}`, where `entries` are the history entries from position `from`, `len`
/// the history length and `unmerged` 1 when the stored history must still be merged in.
const SNAPSHOT: &str = r#"
local len = redis.call('LLEN', KEYS[1])
local from = 0
local known = tonumber(ARGV[3])
if known > 0 and len >= known then
  local last = redis.call('LINDEX', KEYS[1], known - 1)
  if last and string.find(last, '"messageId":"' .. ARGV[4] .. '"', 1, true) then from = known end
end
local history = redis.call('LRANGE', KEYS[1], from, -1)
local unmerged = redis.call('EXISTS', KEYS[3])
local mid = redis.call('GET', KEYS[2])
if not mid then return {history, from, len, unmerged} end
local record = redis.call('GET', ARGV[1] .. mid)
local chunks = redis.call('LRANGE', ARGV[2] .. mid, 0, -1)
return {history, from, len, unmerged, mid, record or false, chunks}
"#;

/// Merges the durable history into a session's Redis history that was started while SQL was
/// unreachable: the stored messages Redis does not hold (the older ones) go in front, in
/// order; then the unmerged marker goes.
///
/// KEYS: history, unmerged marker. ARGV: TTL, then the stored messages' JSON in order.
/// Returns how many messages were put in.
const MERGE: &str = r#"
local present = {}
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, msg = pcall(cjson.decode, entry)
  if ok and msg.messageId then present[msg.messageId] = true end
end
local added = 0
for i = #ARGV, 2, -1 do
  local ok, msg = pcall(cjson.decode, ARGV[i])
  if ok and msg.messageId and not present[msg.messageId] then
    redis.call('LPUSH', KEYS[1], ARGV[i])
    added = added + 1
  end
end
if added > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
redis.call('DEL', KEYS[2])
return added
"#;

/// Refills a session's history (lost to expiry or a flush) from the durable store, unless it
/// has been refilled or written meanwhile.
///
/// KEYS: history. ARGV: TTL, then the messages' JSON in order.
/// Returns 1 when it filled the history, 0 when the history already existed.
const WARM: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Lua: the history entry of assistant message `mid` in list `key`, or nil. Scans the list, so
/// it is only used on the rare paths (a cancel or resume of an answer whose record expired).
const ANSWER_IN_HISTORY: &str = r#"
local function answer_in_history(key, mid)
  local needle = '"messageId":"' .. mid .. '"'
  for _, entry in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if string.find(entry, needle, 1, true) then
      local ok, msg = pcall(cjson.decode, entry)
      if ok and msg.role == 'assistant' then return entry end
    end
  end
  return nil
end
"#;

/// Sets the cancel flag if the answer is streaming in this session.
///
/// KEYS: active, cancel flag, answer record, history. ARGV: answer id, flag TTL, session id.
/// Returns `cancelling`, `already_finished` or `not_found`.
const CANCEL: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  return 'cancelling'
end
local record = redis.call('GET', KEYS[3])
if record then
  local ok, msg = pcall(cjson.decode, record)
  if ok and msg.sessionId == ARGV[3] and msg.isComplete then return 'already_finished' end
end
if answer_in_history(KEYS[4], ARGV[1]) then return 'already_finished' end
return 'not_found'
"#;

/// Looks up an answer for `resume`.
///
/// KEYS: answer record, chunk log, history. ARGV: answer id, from index, session id.
/// Returns `{'RECOVERED', record, chunks from index}`, `{'COMPLETED', final JSON}`,
/// `{'EXPIRED', record}` or `{'NOT_FOUND'}`.
const RECOVER: &str = r#"
local record = redis.call('GET', KEYS[1])
if record then
  local ok, msg = pcall(cjson.decode, record)
  if not ok or msg.sessionId ~= ARGV[3] then return {'NOT_FOUND'} end
  if msg.isComplete then return {'COMPLETED', record} end
  local from = tonumber(ARGV[2])
  local len = redis.call('LLEN', KEYS[2])
  if len == 0 and from > 0 then return {'EXPIRED', record} end
  return {'RECOVERED', record, redis.call('LRANGE', KEYS[2], from, -1)}
end
local entry = answer_in_history(KEYS[3], ARGV[1])
if entry then return {'COMPLETED', entry} end
return {'NOT_FOUND'}
"#;

/// The compiled scripts (each keeps its SHA1 for EVALSHA).
pub(crate) struct Scripts {
    pub start: Script,
    pub append: Script,
    pub finish: Script,
    pub keep_alive: Script,
    pub snapshot: Script,
    pub warm: Script,
    pub merge: Script,
    pub cancel: Script,
    pub recover: Script,
    pub fail: Script,
    pub due: Script,
    pub claim_lease: Script,
    pub release_lease: Script,
    pub claim_many: Script,
    pub take_chat: Script,
    pub open_socket: Script,
    pub renew_sockets: Script,
}

impl Scripts {
    /// The scripts for a single Redis, or for a cluster.
    pub fn new(cluster: bool) -> Self {
        let publish = if cluster { SPUBLISH } else { PUBLISH };
        let due_flags = if cluster { CROSS_SLOT } else { "" };
        Self {
            start: Script::new(&format!("{publish}{NOW_MS}{NEXT_CHANGE}{START}")),
            append: Script::new(&format!("{publish}{NOW_MS}{LIVENESS}{APPEND}")),
            finish: Script::new(&format!("{publish}{NEXT_CHANGE}{END_ANSWER}{FINISH}")),
            keep_alive: Script::new(&format!("{NOW_MS}{LIVENESS}{KEEP_ALIVE}")),
            snapshot: Script::new(SNAPSHOT),
            warm: Script::new(WARM),
            merge: Script::new(MERGE),
            cancel: Script::new(&format!("{ANSWER_IN_HISTORY}{CANCEL}")),
            recover: Script::new(&format!("{ANSWER_IN_HISTORY}{RECOVER}")),
            fail: Script::new(&format!("{publish}{NOW_MS}{NEXT_CHANGE}{END_ANSWER}{FAIL}")),
            due: Script::new(&format!("{due_flags}{NOW_MS}{DUE}")),
            claim_lease: Script::new(crate::lease::CLAIM),
            release_lease: Script::new(crate::lease::RELEASE),
            claim_many: Script::new(crate::lease::CLAIM_MANY),
            take_chat: Script::new(crate::access::TAKE_CHAT),
            open_socket: Script::new(crate::access::OPEN_SOCKET),
            renew_sockets: Script::new(crate::access::RENEW_SOCKETS),
        }
    }
}

/// One call of a script, written straight into its `EVALSHA` command. `Script::key` and
/// `Script::arg` copy every key and argument into a buffer of its own and then again into the
/// command; on the per-chunk path (`APPEND`, six keys and seven arguments) those copies and
/// allocations were ~40 % of the client's instructions per call (callgrind), and an AI node
/// spent 8 % less CPU per chunk without them. Used where a call is made per chunk.
pub(crate) struct Eval<'a> {
    script: &'a Script,
    cmd: Cmd,
}

impl<'a> Eval<'a> {
    /// A call of `script` on `keys` (arguments follow with [`Eval::arg`]).
    pub(crate) fn new(script: &'a Script, keys: &[&str]) -> Self {
        // Room for the keys and a chunk frame's worth of arguments.
        let bytes = keys.iter().map(|k| k.len()).sum::<usize>() + 512;
        let mut cmd = Cmd::with_capacity(3 + keys.len() + 8, bytes);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        Self { script, cmd }
    }

    /// Appends `ARGV[n]`.
    pub(crate) fn arg<T: ToRedisArgs>(mut self, arg: T) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the script, loading it first when Redis does not have it (`NOSCRIPT`: a restarted
    /// or flushed Redis, a new cluster master), as `ScriptInvocation::invoke_async` does.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            reply => reply,
        }
    }
}
