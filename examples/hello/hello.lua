local http = require("http")

local function handler()
    local res = http.response()
    res:set_header("Content-Type", "text/plain")
    res:write("hello")
end

return { handler = handler }
