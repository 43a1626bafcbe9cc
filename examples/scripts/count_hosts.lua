-- count_hosts.lua: counts the answered flows per host and, when strata stops (Ctrl-C or SIGTERM), prints
-- a summary on stdout, busiest host first:
--
--   flows per host:
--        2  example.com
--        1  example.org
--
-- Defining `response` makes strata keep response bodies (up to --body-size-limit); counting in
-- `responseheaders` instead would leave them streaming, at the price of also counting responses whose
-- body then fails.
--
-- Run: strata -s examples/scripts/count_hosts.lua
--
-- The mitmproxy equivalent:
--   counts = collections.Counter()
--   def response(flow): counts[flow.request.host] += 1
--   def done():
--       for host, n in counts.most_common(): print(f"{n:6}  {host}")

local counts = {}

function response(flow)
    local host = flow.request.host
    counts[host] = (counts[host] or 0) + 1
end

function done()
    local hosts = {}
    for host in pairs(counts) do
        hosts[#hosts + 1] = host
    end
    -- Most flows first; equal counts by name, so the order is the same on every run.
    table.sort(hosts, function(a, b)
        if counts[a] ~= counts[b] then
            return counts[a] > counts[b]
        end
        return a < b
    end)
    print("flows per host:")
    for _, host in ipairs(hosts) do
        print(string.format("%6d  %s", counts[host], host))
    end
end
