-- Client A of benchmarks/noisy_split.py: large filtered queries, the bodies in turn.
-- wrk -s noisy_filters.lua URL -- BODY_FILE...; the API key comes from VP_NOISY_KEY
-- (an environment variable, so it is not on a command line).
local bodies = {}
local sent = 0

function init(args)
  for i, path in ipairs(args) do
    local f = assert(io.open(path, "rb"))
    bodies[i] = f:read("*a")
    f:close()
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("VP_NOISY_KEY"))
end

function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[(sent % #bodies) + 1])
end
