-- Relays the connection to the echo process of the node named by ?t= (by cluster name).
local http = require("http")
local json = require("json")

local function handler()
    local req = http.request()
    local res = http.response()
    local node = req:query("t")
    if not node then
        res:set_status(http.STATUS.BAD_REQUEST)
        res:write("?t=NODE names the node whose echo process to relay to")
        return
    end
    res:set_header("X-WS-Relay", json.encode({ target_pid = "global:echo_" .. node }))
end

return { handler = handler }
