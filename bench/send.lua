-- wrk script: POST /api/send-message, rotating over the contacts in WA_CONTACTS (comma separated), for the
-- organization WA_ORG, with the API key WA_KEY.
local contacts = {}
for c in string.gmatch(os.getenv("WA_CONTACTS") or "", "[^,]+") do contacts[#contacts + 1] = c end
local org = os.getenv("WA_ORG") or "bench"
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("WA_KEY")
request = function()
  n = n + 1
  local to = contacts[(n % #contacts) + 1]
  local body = string.format('{"organization_id":"%s","phone":"%s","message":"recordatorio de cita %d"}', org, to, n)
  return wrk.format(nil, "/api/send-message", nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors_status=%d errors_timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
