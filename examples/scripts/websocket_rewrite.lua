-- websocket_rewrite.lua: upper-cases the text messages the server sends over WebSocket. Messages from
-- the client, binary messages and control frames pass unchanged.
--
-- Run: strata -s examples/scripts/websocket_rewrite.lua
--
-- The mitmproxy equivalent:
--   def websocket_message(flow):
--       message = flow.websocket.messages[-1]
--       if not message.from_client and message.is_text:
--           message.text = message.text.upper()

function websocket_message(flow, message)
    if message.from_client or message.type ~= "text" then
        return
    end
    -- What the client receives is whatever `message.content` holds when the function returns.
    -- To replace a word instead: message.content = message.content:gsub("cat", "dog")
    message.content = message.content:upper()
end
