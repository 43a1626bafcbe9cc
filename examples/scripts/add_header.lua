-- add_header.lua: adds the header `x-strata: 1` to every response.
--
-- It runs in `responseheaders`, as soon as the response head arrives, and defines no `response`, so
-- bodies keep streaming through strata instead of being held in memory.
--
-- Run: strata -s examples/scripts/add_header.lua
--
-- The mitmproxy equivalent:
--   def responseheaders(flow):
--       flow.response.headers["x-strata"] = "1"

function responseheaders(flow)
    flow.response.headers["x-strata"] = "1"
end
