-- Sends every client frame back as it came, until the client leaves. Only a frame's payload
-- is read: the relay's other messages (ws.join, ws.heartbeat) are passed over unread.
local function run()
    local inbox = process.inbox()
    repeat
        local msg = inbox:receive()
        local topic = msg and msg:topic()
        if topic == "ws.message" then
            local data = msg:payload():data()
            process.send(data.client_pid, "ws.send", { type = data.type, data = data.data })
        end
    until topic == nil or topic == "ws.leave"
end

return { run = run }
