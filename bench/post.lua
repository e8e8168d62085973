-- wrk script for bench/run.py: POST bodies read from a file, with a content type and an API
-- token, over and over; check every response; print the figures as one JSON line at the end.
--
--   wrk -t2 -c4 -d10s -s bench/post.lua URL -- BODY_FILE CONTENT_TYPE TOKEN [lines]
--
-- With "lines", every line of BODY_FILE is a body of its own and the requests take them in turn
-- (each wrk thread starting at a different line); otherwise the whole file is one body.
--
-- A response counts as good when its status is 2xx and its body says "rows_failed":0 (every
-- row was scored). bench/run.py reads the line that starts with BENCH_RESULT.
--
-- "tail_us" is the latency distribution's upper tail: the latency at each percentile from 90 to
-- 100 in steps of 0.01, so that bench/soak.py can merge the windows of a soak into one p99.

local threads = {}

local started_threads = 0

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_index", started_threads) -- a global of that thread's own Lua state
   started_threads = started_threads + 1
end

function init(args)
   local path, content_type, token, mode = args[1], args[2], args[3], args[4]
   local file = assert(io.open(path, "rb"))
   wrk.method = "POST"
   wrk.headers["Content-Type"] = content_type
   wrk.headers["Authorization"] = "Token " .. token
   if mode == "lines" then
      bodies = {}
      for line in file:lines() do
         if line ~= "" then
            table.insert(bodies, line)
         end
      end
      next_body = ((thread_index or 0) * 7919) % #bodies + 1
   else
      wrk.body = file:read("*a")
   end
   file:close()
   -- Per-thread counters, read back in done() with thread:get().
   good = 0
   non_2xx = 0
   bad_body = 0
   last_bad_status = 0
end

function request()
   if bodies == nil then
      return wrk.format()
   end
   local body = bodies[next_body]
   next_body = next_body % #bodies + 1
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non_2xx = non_2xx + 1
      last_bad_status = status
   elseif not string.find(body, '"rows_failed":0', 1, true) then
      bad_body = bad_body + 1
   else
      good = good + 1
   end
end

function done(summary, latency, requests)
   local totals = { good = 0, non_2xx = 0, bad_body = 0 }
   local last_bad_status = 0
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + (thread:get(name) or 0)
      end
      local status = thread:get("last_bad_status") or 0
      if status ~= 0 then
         last_bad_status = status
      end
   end
   local errors = summary.errors
   local tail = {}
   for step = 0, 1000 do
      tail[#tail + 1] = string.format("%.0f", latency:percentile(90 + step / 100))
   end
   io.write(string.format(
      'BENCH_RESULT {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, ' ..
      '"good": %.0f, "non_2xx": %.0f, "bad_body": %.0f, "last_bad_status": %.0f, ' ..
      '"socket_errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "timeout": %.0f}, ' ..
      '"latency_us": {"mean": %.1f, "max": %.1f, "p50": %.1f, "p90": %.1f, "p99": %.1f}, ' ..
      '"tail_us": [%s]}\n',
      summary.requests, summary.duration, summary.bytes,
      totals.good, totals.non_2xx, totals.bad_body, last_bad_status,
      errors.connect, errors.read, errors.write, errors.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      table.concat(tail, ",")))
end
