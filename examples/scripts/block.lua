-- block.lua: refuses the requests whose URL matches a Lua pattern, with `403 Forbidden`, or with
-- `--set block_kill=true` by dropping the connection without an answer. The server never sees them.
--
-- The pattern is a Lua pattern (not a regex): `%.` is a literal dot, `-` is a quantifier (write `%-`).
-- It runs in `requestheaders` and defines no `request`, so the bodies of allowed requests keep streaming.
--
-- Run: strata -s examples/scripts/block.lua --set 'block_pattern=^https?://ads%.'
--
-- The mitmproxy equivalent:
--   def requestheaders(flow):
--       if re.search(r"^https?://ads\.", flow.request.url):
--           flow.response = http.Response.make(403, b"blocked by strata\n")

local pattern = strata.option("block_pattern", "^https?://ads%.", "Lua pattern matched against the URL")
local kill = strata.option("block_kill", false, "drop the connection instead of answering 403")

function requestheaders(flow)
    if not flow.request.url:find(pattern) then
        return
    end
    strata.log.info("blocked " .. flow.request.url)
    if kill then
        flow:kill()
    else
        flow.response = strata.response(403, { ["content-type"] = "text/plain" }, "blocked by strata\n")
    end
end
