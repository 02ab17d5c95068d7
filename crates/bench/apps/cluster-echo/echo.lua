-- One echo process per node, shared by every connection relayed to it: it registers the
-- name it is given (a cluster name) and sends a text frame back to the connection it came
-- from. tests/cluster_relay.rs runs this file too.
local function run(name)
    local ok, err = process.registry.register(name)
    if not ok then error(err) end
    local inbox = process.inbox()
    while true do
        local msg, ok = inbox:receive()
        if not ok then break end
        if msg:topic() == "ws.message" then
            local data = msg:payload():data()
            process.send(data.client_pid, "ws.send", { type = data.type, data = data.data })
        end
    end
end

return { run = run }
