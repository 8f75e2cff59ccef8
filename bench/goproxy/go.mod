module ringway.bench/goproxy

go 1.19
