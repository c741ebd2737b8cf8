-- wrk script for bench/run.py: replays precomputed, signed Twilio webhook requests.
-- BENCH_REQUESTS names a file with one request per line: path <TAB> form body <TAB> X-Twilio-Signature.
-- Each wrk thread starts at its own place in the list, so unique ids (MessageSid) are not sent twice.

local file = os.getenv("BENCH_REQUESTS")
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  requests = {}
  for line in io.lines(file) do
    local path, body, signature = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)$")
    requests[#requests + 1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["X-Twilio-Signature"] = signature,
    }, body)
  end
  position = thread_id * math.floor(#requests / threads)
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "bad_status": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
