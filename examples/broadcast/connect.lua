-- Hands every connection to the room process (by its registered name).
local http = require("http")
local json = require("json")

local function handler()
    local req = http.request()
    local res = http.response()
    res:set_header("X-WS-Relay", json.encode({
        target_pid = "room",
        metadata = { sender = req:query("sender") == "1" },
    }))
end

return { handler = handler }
