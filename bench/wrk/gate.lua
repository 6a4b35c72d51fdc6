-- The gate under wrk, in bench/gate.py's mix (ORGGUARD_MIX: first,competing,repeated shares):
-- a first claim on a new mailbox, a competing claim on one of the ORGGUARD_OWNED mailboxes contoso-na
-- owns (a held case is written), or a body this thread already sent (a duplicate delivery).
local template = io.open(os.getenv("ORGGUARD_FIXTURE")):read("*a")
local key = os.getenv("ORGGUARD_KEY")
local path = os.getenv("ORGGUARD_PATH") or "/api/dataverse/gate"  -- the bare baseline takes the same bodies
local owned = tonumber(os.getenv("ORGGUARD_OWNED") or "4000")
local first, competing = string.match(os.getenv("ORGGUARD_MIX") or "0.7,0.2,0.1", "([%d.]+),([%d.]+)")
first, competing = tonumber(first), tonumber(competing)
local n = 0
local tid = 0
local sent = {}
local threads = {}
unexpected = 0  -- answers that are not a decided 200 or 409 (an error, or "degraded": could not decide)

setup = function(thread) tid = tid + 1; thread:set("tid", tid); table.insert(threads, thread) end
init = function() math.randomseed(1000 + (tid or 0)) end

local function fresh(address)
  n = n + 1
  local hex = string.format("%012x", n + (tid or 0) * 100000000)
  local body = template:gsub("0b3f6d2e%-7a91%-4c5d%-a8e2%-6f4b1d9c3e70", "0b3f6d2e-7a91-4c5d-a8e2-" .. hex)
  body = body:gsub("f1e2d3c4%-b5a6%-4978%-8a9b%-0c1d2e3f4a5b", "f1e2d3c4-b5a6-4978-8a9b-" .. hex)
  body = body:gsub("Aiko.Tanaka@Contoso.com", address or ("wrk" .. hex .. "@contoso.com"))
  sent[((n - 1) % 200) + 1] = body  -- slots 1..200, the first filled first
  return body
end

request = function()
  local roll = math.random()
  local body
  if roll < first or n == 0 then
    body = fresh(nil)
  elseif roll < first + competing then
    body = fresh("owned" .. math.random(0, owned - 1) .. "@contoso.com")
  else
    body = sent[math.random(1, math.min(n, 200))]
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["x-orgguard-key"] = key}, body)
end

response = function(status, headers, body)
  if (status ~= 200 and status ~= 409) or string.find(body, '"degraded"%s*:%s*true') then
    unexpected = unexpected + 1
  end
end

done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("unexpected") or 0) end
  io.write(string.format("unexpected answers: %d\n", total))
end
