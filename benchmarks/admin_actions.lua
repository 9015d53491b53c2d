-- wrk script for benchmarks/audit_scale.py: admin actions through the HTTP API.
-- Arguments: the client ids to act on. The admin token comes from the environment
-- (VP_BENCH_TOKEN), never from the command line. Each request is one admin action:
-- tier changes and invoice records, alternating, round-robin over the clients.
-- Acknowledged billing records (201) are counted, so the benchmark can check that
-- each one's event is in the log afterwards.
local ids = {}
local n = 0
local tiers = {"standard", "premium", "free"}
local token = os.getenv("VP_BENCH_TOKEN")
local threads = {}
billed = 0 -- per thread; read by done() through thread:get

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  for _, v in ipairs(args) do ids[#ids + 1] = v end
  n = math.random(1, 100000)
end

function request()
  n = n + 1
  local cid = ids[(n % #ids) + 1]
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
  if n % 2 == 0 then
    local body = '{"tier":"' .. tiers[math.floor(n / 2) % 3 + 1] .. '","reason":"benchmark"}'
    return wrk.format("POST", "/admin/v1/clients/" .. cid .. "/tier", headers, body)
  end
  local body = '{"kind":"invoice_issued","amount_cents":' .. (100 + n)
    .. ',"currency":"EUR","reference":"B-' .. n .. '","reason":"benchmark"}'
  return wrk.format("POST", "/admin/v1/clients/" .. cid .. "/billing", headers, body)
end

function response(status, headers, body)
  if status == 201 then billed = billed + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("billed") end
  io.write(string.format("actions: %d non-2xx: %d billed: %d\n",
    summary.requests, summary.errors.status, total))
end
