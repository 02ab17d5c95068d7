-- One room: members join and leave; a text frame from the sender goes to every member
-- (the sender included), unchanged.
local function run()
    process.registry.register("room")
    local members = {} -- client_pid -> true
    local inbox = process.inbox()
    while true do
        local msg, ok = inbox:receive()
        if not ok then break end
        local topic = msg:topic()
        local data = msg:payload():data()
        if topic == "ws.message" then
            if data.metadata.sender then
                local out = { type = data.type, data = data.data }
                for pid in pairs(members) do
                    process.send(pid, "ws.send", out)
                end
            end
        elseif topic == "ws.join" then
            members[data.client_pid] = true
        elseif topic == "ws.leave" then
            members[data.client_pid] = nil
        end
    end
end

return { run = run }
