module github.com/podblocks/podblocks/bench

go 1.26.0

require github.com/podblocks/podblocks v0.0.0

replace github.com/podblocks/podblocks => ../
