-- Each request a new operation on a new mailbox (first claims): every one is a ledger write.
local template = io.open(os.getenv("ORGGUARD_FIXTURE")):read("*a")
local n = 0
local tid = 0
setup = function(thread) tid = tid + 1; thread:set("tid", tid) end
request = function()
  n = n + 1
  local hex = string.format("%012x", n + (tid or 0) * 100000000)
  local body = template:gsub("0b3f6d2e%-7a91%-4c5d%-a8e2%-6f4b1d9c3e70", "0b3f6d2e-7a91-4c5d-a8e2-" .. hex)
  body = body:gsub("f1e2d3c4%-b5a6%-4978%-8a9b%-0c1d2e3f4a5b", "f1e2d3c4-b5a6-4978-8a9b-" .. hex)
  body = body:gsub("Aiko.Tanaka@Contoso.com", "user" .. hex .. "@contoso.com")
  return wrk.format("POST", "/api/dataverse/gate",
    {["Content-Type"] = "application/json", ["x-orgguard-key"] = os.getenv("ORGGUARD_KEY")}, body)
end
