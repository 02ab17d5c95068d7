local json = require("json")

-- Receives a connection transferred with ws.control and echoes its messages.
local function run()
    local inbox = process.inbox()
    while true do
        local msg, ok = inbox:receive()
        if not ok then break end
        local data = msg:payload():data()
        if msg:topic() == "ws.join" then
            process.send(data.client_pid, "ws.send", {
                type = "text",
                data = json.encode({event = "transferred"})
            })
        elseif msg:topic() == "ws.message" then
            process.send(data.client_pid, "ws.send", {
                type = "text",
                data = json.encode({event = "echo", data = data.data})
            })
        elseif msg:topic() == "ws.leave" then
            break
        end
    end
end

return { run = run }
