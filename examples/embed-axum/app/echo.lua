-- Sends every client frame back as it came, until the client leaves.
-- (examples/echo/echo.lua again: an app stands alone, its loader reads no file outside it.)
local function run()
    local inbox = process.inbox()
    while true do
        local msg, ok = inbox:receive()
        if not ok then break end
        local topic = msg:topic()
        local data = msg:payload():data()
        if topic == "ws.message" then
            process.send(data.client_pid, "ws.send", { type = data.type, data = data.data })
        elseif topic == "ws.leave" then
            break
        end
    end
end

return { run = run }
