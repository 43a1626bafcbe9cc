-- redirect_host.lua: sends the requests for one host to another host and port. The Host header follows
-- the new address.
--
-- Run: strata -s examples/scripts/redirect_host.lua \
--          --set redirect_from=example.com --set redirect_to_host=127.0.0.1 --set redirect_to_port=8080
--
-- The mitmproxy equivalent:
--   def request(flow):
--       if flow.request.pretty_host == "example.com":
--           flow.request.host = "127.0.0.1"
--           flow.request.port = 8080

local from = strata.option("redirect_from", "example.com", "the host whose requests are redirected")
local to_host = strata.option("redirect_to_host", "127.0.0.1", "the host they go to instead")
local to_port = strata.option("redirect_to_port", 8080, "the port they go to instead")

function request(flow)
    if flow.request.host == from then
        flow.request.host = to_host
        flow.request.port = to_port
    end
end
