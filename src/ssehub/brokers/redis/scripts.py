"""The Lua scripts of the Redis broker: each change of ids, streams and indexes is one atomic
step. Key and argument layouts are those the broker passes (``Keys`` names the keys)."""

from dataclasses import dataclass

# Forget one channel whole (the total bound): its newest seq raises the "forgotten" watermark.
FORGET = """
local function forget(name)
  local newest = tonumber(redis.call('HGET', KEYS[8], name) or '0')
  if newest > tonumber(redis.call('GET', KEYS[9]) or '0') then
    redis.call('SET', KEYS[9], string.format('%d', newest))
  end
  redis.call('DEL', ARGV[16] .. name)
  redis.call('HDEL', KEYS[8], name)
  redis.call('HDEL', KEYS[4], name)
  redis.call('ZREM', KEYS[6], name)
  redis.call('ZREM', KEYS[7], name)
end
"""


@dataclass(frozen=True, slots=True)
class StepScript:
    """Lua that PUBLISH runs with a publish, in the same atomic step (``publish_script``).

    ``head`` defines what the other two use. ``before`` runs once the incarnation is checked
    and before a replay is recognised: ``return refuse(reason)`` refuses the event (a replay
    is answered instead), and it may change ``data``. ``after`` runs once the event is stored
    as ``sid`` (never on a replay). All three see their own keys and arguments as ``SK``/``SA``
    (after the broker's) and may set ``answer``, which is returned to the caller.
    """

    head: str
    before: str
    after: str


NO_STEP = StepScript("", "", "")

# Step keys and arguments follow the broker's 10 keys and 16 arguments.
STEP_PARTS = """
local SK, SA = {unpack(KEYS, 11)}, {unpack(ARGV, 17)}
"""

# Refuses (``{'', '', 2}``) unless the caller checked in with this Redis incarnation (CHECK_IN).
PUBLISH_TEMPLATE = (
    FORGET
    + """
-- step head
local epoch = redis.call('GET', KEYS[1])
if not epoch or redis.call('HGET', KEYS[10], 'run') ~= ARGV[1] then
  return {'', '', 2, ''}
end
local data, answer = ARGV[9], ''
-- The answer to a retry (its Idempotency-Key again) whose first attempt was stored, or nil.
local function replay()
  if ARGV[2] ~= '' then
    local first = redis.call('GET', KEYS[5])
    if first then return {epoch, first, 1, answer} end
  end
end
-- A step refuses an event with ``return refuse(reason)``: a retry is answered instead.
local function refuse(reason)
  return replay() or {epoch, reason, 3, answer}
end
-- step before
local repeated = replay()
if repeated then return repeated end
local seq = redis.call('INCR', KEYS[2])
local sid = string.format('%d', seq)
local maxlen = tonumber(ARGV[3])
if maxlen > 0 then
  local trimmed = 0
  if redis.call('EXISTS', KEYS[3]) == 0 then
    -- A new stream, or one that expired whole: what the channel (or any forgotten channel)
    -- held before counts as trimmed, so a resume from before it gets a reset, not a hole.
    trimmed = tonumber(redis.call('HGET', KEYS[8], ARGV[11]) or redis.call('GET', KEYS[9]) or '0')
  end
  redis.call('HSET', KEYS[8], ARGV[11], sid)
  local fields = {'x', ARGV[13], 't', ARGV[5], 'd', data}
  if ARGV[7] ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = ARGV[7] end
  if ARGV[8] ~= '' then fields[#fields + 1] = 'r'; fields[#fields + 1] = ARGV[8] end
  if ARGV[14] ~= '' then fields[#fields + 1] = 'l'; fields[#fields + 1] = ARGV[14] end
  redis.call('XADD', KEYS[3], sid .. '-0', unpack(fields))
  local len = redis.call('XLEN', KEYS[3])
  if len > maxlen then
    local old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', len - maxlen)
    trimmed = math.max(trimmed, tonumber(string.match(old[#old][1], '^%d+')))
    redis.call('XTRIM', KEYS[3], 'MAXLEN', maxlen)
  end
  local cutoff = tonumber(ARGV[6])
  local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if #oldest > 0 and tonumber(oldest[1][2][2]) < cutoff then
    local last = nil
    for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 256)) do
      if tonumber(entry[2][2]) >= cutoff then break end
      last = tonumber(string.match(entry[1], '^%d+'))
    end
    if last then
      redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d', last + 1))
      if last > trimmed then trimmed = last end
    end
  end
  if trimmed > tonumber(redis.call('HGET', KEYS[4], ARGV[11]) or '0') then
    redis.call('HSET', KEYS[4], ARGV[11], string.format('%d', trimmed))
  end
  local keep = tonumber(ARGV[4])
  if redis.call('PTTL', KEYS[3]) < keep then redis.call('PEXPIRE', KEYS[3], keep) end
  redis.call('ZADD', KEYS[6], 'GT', ARGV[13], ARGV[11])
  if redis.call('ZADD', KEYS[7], 0, ARGV[11]) == 1 then
    -- A new channel: past the total bound, forget those whose newest event expires first.
    local over = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[15])
    if over > 0 then
      for _, name in ipairs(redis.call('ZRANGE', KEYS[6], 0, over)) do
        if over > 0 and name ~= ARGV[11] then
          forget(name)
          over = over - 1
        end
      end
    end
  end
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[5], sid .. ':' .. ARGV[11], 'PX', ARGV[2])
end
-- step after
redis.call('PUBLISH', ARGV[10], epoch .. '\\n' .. sid .. '\\n' .. ARGV[12] .. data)
return {epoch, sid, 0, answer}
"""
)


def publish_script(step: StepScript = NO_STEP) -> str:
    """The PUBLISH script with ``step`` run inside it (none: the plain publish)."""
    head = STEP_PARTS + step.head if step is not NO_STEP else ""
    parts = {"head": head, "before": step.before, "after": step.after}
    script = PUBLISH_TEMPLATE
    for name, text in parts.items():
        script = script.replace(f"-- step {name}\n", text + "\n" if text else "")
    return script


PUBLISH = publish_script()

HEAD = """
return {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or '0'}
"""

# The ids' guard, run on start and whenever Redis may have restarted (its script cache is empty
# then). The incarnation hash holds the Redis ``run_id`` last checked in with, the seq Redis held
# when that run was first seen (``restored``) and the seq the epoch began after (``base``). A
# caller that saw, under an earlier run of the same epoch, a seq beyond ``restored`` proves that
# Redis came back from a stale snapshot: the ids after ``restored`` get a new epoch.
CHECK_IN = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local epoch = redis.call('GET', KEYS[1])
local seq = redis.call('GET', KEYS[2]) or '0'
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('HSET', KEYS[3], 'run', run, 'restored', seq, 'base', seq)
elseif redis.call('HGET', KEYS[3], 'run') ~= run then
  redis.call('HSET', KEYS[3], 'run', run, 'restored', seq)
end
local restored = redis.call('HGET', KEYS[3], 'restored')
if ARGV[2] ~= '' and ARGV[2] ~= run and ARGV[3] == epoch
    and tonumber(ARGV[4]) > tonumber(restored) then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('HSET', KEYS[3], 'base', restored)
end
return {epoch, seq, redis.call('HGET', KEYS[3], 'base') or '0', run}
"""

# Atomic, so a channel published to meanwhile cannot be dropped from the index. The newest
# seq of a forgotten channel raises the "forgotten" watermark: resumes from before it that may
# cover such a channel get a reset (the memory broker's ``_forgotten_upto``).
PRUNE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
if #gone > 0 then
  local top = tonumber(redis.call('GET', KEYS[4]) or '0')
  for _, seq in ipairs(redis.call('HMGET', KEYS[3], unpack(gone))) do
    if seq and tonumber(seq) > top then top = tonumber(seq) end
  end
  redis.call('SET', KEYS[4], string.format('%d', top))
  redis.call('HDEL', KEYS[3], unpack(gone))
  redis.call('HDEL', KEYS[5], unpack(gone))
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
end
return #gone
"""
