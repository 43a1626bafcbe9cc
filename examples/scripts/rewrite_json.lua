-- rewrite_json.lua: changes a field in JSON responses: every JSON object answer gets `"premium": true`,
-- whatever the server said.
--
-- It runs in `response`, so strata keeps response bodies (up to --body-size-limit) for it. Other
-- content types and JSON that is not an object pass unchanged; so does a body that is not valid JSON
-- (`json()` raises an error, which strata logs, and the flow goes on as it was).
--
-- Run: strata -s examples/scripts/rewrite_json.lua
--
-- The mitmproxy equivalent:
--   def response(flow):
--       if "json" in flow.response.headers.get("content-type", ""):
--           data = flow.response.json()
--           data["premium"] = True
--           flow.response.text = json.dumps(data)

function response(flow)
    local content_type = flow.response.headers["content-type"] or ""
    if not content_type:find("json", 1, true) then
        return
    end
    local data = flow.response:json()
    -- Only objects: a JSON array decodes to a table too, but one marked as an array by its metatable.
    if type(data) ~= "table" or getmetatable(data) ~= nil then
        return
    end
    data.premium = true
    -- Setting the body also sets Content-Length to the new size.
    flow.response.text = strata.json.encode(data)
end
