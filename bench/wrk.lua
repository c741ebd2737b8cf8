-- wrk script for bench/run.py: replays precomputed, signed Twilio webhook requests.
-- BENCH_REQUESTS names a file with one request per line:
--   path <TAB> form body <TAB> X-Twilio-Signature <TAB> I-Twilio-Idempotency-Token
-- BENCH_START is where this run begins; thread i of BENCH_THREADS sends requests start + i, start + i + threads,
-- ..., so no request (no CallSid or MessageSid) is sent twice in a run, nor in the next run started after it.

local file = os.getenv("BENCH_REQUESTS")
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local start = tonumber(os.getenv("BENCH_START") or "0")
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  requests = {}
  for line in io.lines(file) do
    local path, body, signature, token = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    requests[#requests + 1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["X-Twilio-Signature"] = signature,
      ["I-Twilio-Idempotency-Token"] = token,
    }, body)
  end
  position = start + thread_id - threads
end

function request()
  position = position + threads
  return requests[position % #requests + 1]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "bad_status": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
