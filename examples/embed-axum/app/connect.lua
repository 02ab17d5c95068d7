local http = require("http")
local json = require("json")

-- One echo process per connection, as the seed recommends.
-- (examples/echo/connect.lua again, with this app's names: an app stands alone.)
local function handler()
    local res = http.response()
    local pid, err = process.spawn("embed:echo", "embed:processes")
    if not pid then
        res:set_status(http.STATUS.SERVICE_UNAVAILABLE)
        res:write(tostring(err))
        return
    end
    res:set_header("X-WS-Relay", json.encode({ target_pid = pid }))
end

return { handler = handler }
