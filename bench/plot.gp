# bench/plot.gp — the latency plot of bench/compare.sh: one panel per scenario (local
# endpoint answers, cached forwarded answers), one line per server, latency against
# percentile of the 100k qps open-loop run (a percentile spectrum: the x axis stretches the
# tail, so 99 % and 99.9 % are as far apart as 90 % and 99 %).
# Input: the histogram files OUTDIR/SERVER-SCENARIO.hist of vpcdns-bench --histogram, lines
# "latency_us cum_fraction". Called as
#   gnuplot -e "outdir='DIR'; local_servers='vpcdns unbound'; cached_servers='...'; \
#               rate='100k'; titles='FILE'" plot.gp
# and writes OUTDIR/latency.png (pngcairo when this gnuplot has it, else png).

if (!exists("outdir")) outdir = "bench/results"
if (!exists("local_servers")) local_servers = "vpcdns unbound dnsmasq kresd"
if (!exists("cached_servers")) cached_servers = local_servers

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
        set terminal pngcairo size 1400,560 font "sans,10"
} else {
        set terminal png size 1400,560
}
set output outdir . "/latency.png"

# "floor" (compare.sh's kernel floor, a do-nothing responder) is drawn dashed: a reference.
# Legend titles: title_SERVER_SCENARIO from the file `titles` when given (compare.sh adds
# the share of queries lost), else the server's name.
if (exists("titles")) load titles
name(s) = s eq "kresd" ? "Knot Resolver" : s eq "unbound" ? "Unbound" : \
        s eq "floor" ? "kernel floor" : s
label(s, scenario) = exists("title_" . s . "_" . scenario) ? \
        value("title_" . s . "_" . scenario) : name(s)
# x = 1 / (1 - fraction): 2 is the median, 10 is p90, 100 is p99, 1000 is p99.9.
spectrum(f) = f < 1 ? 1 / (1 - f) : NaN

set logscale xy
set xrange [1:100000]
set xtics ("50 %%" 2, "90 %%" 10, "99 %%" 100, "99.9 %%" 1000, "99.99 %%" 10000, \
           "99.999 %%" 100000)
set xlabel "percentile"
set ylabel "latency (ms)"
set format y "%g"
set grid xtics ytics mytics
set key top left
set style data lines

if (!exists("rate")) rate = "100k"
set multiplot layout 1,2 title "Latency at " . rate . " qps offered, each server pinned to one core"
do for [scenario in "local cached"] {
        servers = scenario eq "local" ? local_servers : cached_servers
        set title (scenario eq "local" ? "local endpoint answers" : "cached forwarded answers")
        if (words(servers) > 0) {
                plot for [s in servers] outdir . "/" . s . "-" . scenario . ".hist" \
                        using (spectrum($2)):($1 > 0 ? $1 / 1000 : NaN) title label(s, scenario) \
                        lw 2 dt 1 + (s eq "floor")
        } else {
                set label 1 "no data" at graph 0.5, 0.5 center
                plot 1 notitle lc rgb "white"
                unset label 1
        }
}
unset multiplot
