-- One room: a process group of its connections. The room joins every connection to the
-- group "members"; a text frame from the sender goes to all of them (the sender included),
-- unchanged. One group send converts the frame once and encodes it once for every socket,
-- and a connection's membership ends by itself when the connection does.
local pg = require("pg")

local function run()
    process.registry.register("room")
    local room = assert(pg.open("broadcast:rooms"))
    -- What the room does with each of the relay's messages, by topic.
    local on = {
        ["ws.join"] = function(data)
            room:join("members", data.client_pid)
        end,
        ["ws.message"] = function(data)
            if data.metadata.sender then
                room:broadcast("members", "ws.send", { type = data.type, data = data.data })
            end
        end,
        ["ws.leave"] = function(data)
            -- Moved to another target: no longer ours. (A closed connection has left the
            -- group already; a leave without client_pid is a request that never became a
            -- connection. The room is a service that outlives its members.)
            if data.reason == "transferred" then
                room:leave("members", data.client_pid)
            end
        end,
    }
    local inbox = process.inbox()
    while true do
        local msg, ok = inbox:receive()
        if not ok then break end
        local handle = on[msg:topic()]
        if handle then
            handle(msg:payload():data())
        end
    end
end

return { run = run }
