-- One room: a process group of its connections. The room joins every connection to the
-- group "members"; a text frame from the sender goes to all of them (the sender included),
-- unchanged. One group send converts the frame once and encodes it once for every socket,
-- and a connection's membership ends by itself when the connection does.
local pg = require("pg")

local function run()
    process.registry.register("room")
    local room = assert(pg.open("broadcast:rooms"))
    local inbox = process.inbox()
    while true do
        local msg, ok = inbox:receive()
        if not ok then break end
        local topic = msg:topic()
        local data = msg:payload():data()
        if topic == "ws.message" then
            if data.metadata.sender then
                room:broadcast("members", "ws.send", { type = data.type, data = data.data })
            end
        elseif topic == "ws.join" then
            room:join("members", data.client_pid)
        elseif topic == "ws.leave" and data.reason == "transferred" then
            -- Moved to another target: no longer ours. (A closed connection has left the
            -- group already; a leave without client_pid is a request that never became a
            -- connection. The room is a service that outlives its members.)
            room:leave("members", data.client_pid)
        end
    end
end

return { run = run }
