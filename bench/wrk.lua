-- wrk script shared by every load in bench.py.
--
-- BENCH_POST_BYTES=N turns each request into a POST with an N-byte body (the upload load);
-- unset, wrk sends its usual GET. done() prints one machine-readable line, because wrk's own
-- summary rounds bytes to two decimals ("1.23GB read") and the bench divides CPU time by them.

local post_bytes = tonumber(os.getenv("BENCH_POST_BYTES") or "0")

if post_bytes > 0 then
   wrk.method = "POST"
   wrk.body = string.rep("u", post_bytes)
   wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH-JSON {"requests": %d, "bytes_read": %d, "duration_us": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"p50_us": %d, "p99_us": %d, "post_bytes": %d}\n',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), post_bytes))
end
