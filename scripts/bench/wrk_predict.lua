-- wrk script for `classify serve`: POST /predict with real photos' bytes as the raw body.
--
--   wrk -t2 -c8 -d20s --timeout 30s -s scripts/bench/wrk_predict.lua http://127.0.0.1:PORT \
--       -- PHOTOS [COUNT]
--
-- PHOTOS: a folder (searched recursively for .jpg/.jpeg/.png, sorted, then COUNT of them taken
-- evenly spaced, so that every class folder of a split is in the mix) or a text file listing
-- one photo path per line. COUNT: how many photos to load (default 64). Every wrk thread reads
-- the photos once in `init` and builds one ready request per photo (Content-Type image/jpeg or
-- image/png by extension), then cycles through them, each thread starting at a different
-- photo. Nothing is read from disk while the benchmark runs.
--
-- Prints, from `done`, one machine-readable line that scripts/bench/serve_load.sh parses:
--   RESULT requests=N duration_s=S rps=R p50_ms=A p90_ms=B p99_ms=C max_ms=D non2xx=E
--          connect=F read=G write=H timeout=I photos=P bytes_mean=M
-- (non2xx: responses with a status above 399, as wrk counts them; connect/read/write/timeout:
-- socket errors). Latency percentiles are wrk's, over every completed request.

local photo_arg = nil
local photo_count = 64
local requests = {}
local next_index = 1
local threads = {}
-- Globals, so that `setup` (thread:set) and `done` (thread:get) reach them.
thread_id = 0
loaded_count = 0
loaded_bytes = 0

local function shell_quote(s)
   return "'" .. string.gsub(s, "'", "'\\''") .. "'"
end

local function is_dir(path)
   local p = io.popen("test -d " .. shell_quote(path) .. " && echo d")
   local out = p:read("*a")
   p:close()
   return string.find(out, "d") ~= nil
end

local function list_photos(arg, count)
   local all = {}
   if is_dir(arg) then
      local cmd = "find " .. shell_quote(arg) ..
         " -type f \\( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \\) | LC_ALL=C sort"
      local p = io.popen(cmd)
      for line in p:lines() do
         all[#all + 1] = line
      end
      p:close()
   else
      local f = assert(io.open(arg, "r"), "cannot open the photo list " .. arg)
      for line in f:lines() do
         if line ~= "" then
            all[#all + 1] = line
         end
      end
      f:close()
   end
   if #all == 0 then
      error("no photos (.jpg, .jpeg, .png) found in " .. arg)
   end
   if #all <= count then
      return all
   end
   -- Evenly spaced, so that a sorted split's classes are all represented.
   local picked = {}
   for i = 0, count - 1 do
      picked[#picked + 1] = all[math.floor(i * #all / count) + 1]
   end
   return picked
end

local function content_type(path)
   local lower = string.lower(path)
   if string.match(lower, "%.png$") then
      return "image/png"
   end
   return "image/jpeg"
end

-- Runs once per thread, in the main Lua state, before the threads start.
function setup(thread)
   thread:set("thread_id", #threads)
   threads[#threads + 1] = thread
end

-- Runs in each thread's own Lua state.
function init(args)
   photo_arg = args[1] or os.getenv("PHOTOS")
   if not photo_arg then
      error("usage: wrk ... -s wrk_predict.lua URL -- PHOTOS [COUNT]")
   end
   photo_count = tonumber(args[2] or os.getenv("PHOTO_COUNT") or "64")
   local host = wrk.headers["Host"]
   for _, path in ipairs(list_photos(photo_arg, photo_count)) do
      local f = assert(io.open(path, "rb"), "cannot open " .. path)
      local body = f:read("*a")
      f:close()
      loaded_bytes = loaded_bytes + #body
      requests[#requests + 1] = wrk.format("POST", "/predict", {
         ["Host"] = host,
         ["Content-Type"] = content_type(path),
      }, body)
   end
   loaded_count = #requests
   next_index = (thread_id * 7) % #requests + 1
end

function request()
   local r = requests[next_index]
   next_index = next_index % #requests + 1
   return r
end

function done(summary, latency, requests_stats)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   local photos, bytes = 0, 0
   if threads[1] then
      photos = threads[1]:get("loaded_count") or 0
      bytes = threads[1]:get("loaded_bytes") or 0
   end
   local mean = 0
   if photos > 0 then
      mean = bytes / photos
   end
   io.write(string.format(
      "RESULT requests=%d duration_s=%.3f rps=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f " ..
      "max_ms=%.2f non2xx=%d connect=%d read=%d write=%d timeout=%d photos=%d bytes_mean=%.0f\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      e.status, e.connect, e.read, e.write, e.timeout, photos, mean))
end
