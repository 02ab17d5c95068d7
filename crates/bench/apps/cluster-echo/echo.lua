-- One echo process per node, shared by every connection relayed to it (as in
-- tests/cluster_relay.rs): a text frame goes back to the connection it came from.
local env = require("env")

local function run()
    local node = assert(env.get("WSRELAY_APP_NODE"), "WSRELAY_APP_NODE is not set")
    local ok, err = process.registry.register("global:echo_" .. node)
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
