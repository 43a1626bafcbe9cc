-- answer_locally.lua: answers `GET /strata-health` itself with `200 ok`, on any host, without
-- connecting to a server. Everything else goes through as usual.
--
-- Run: strata -s examples/scripts/answer_locally.lua
--      (or --set health_path=/other to answer another path)
--
-- The mitmproxy equivalent:
--   def request(flow):
--       if flow.request.path == "/strata-health":
--           flow.response = http.Response.make(200, b"ok\n", {"content-type": "text/plain"})

local health_path = strata.option("health_path", "/strata-health", "the path strata answers itself")

function request(flow)
    if flow.request.path == health_path then
        -- A response set in `request` is the answer: no server connection is made.
        flow.response = strata.response(200, { ["content-type"] = "text/plain" }, "ok\n")
    end
end
