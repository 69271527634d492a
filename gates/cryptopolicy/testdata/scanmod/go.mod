// A fixture module for the crypto-policy gate's scan: each command under
// cmd/ is one case (see scan_test.go).
module example.com/scanmod

go 1.26.0

require example.com/thirdparty v0.0.0

replace example.com/thirdparty => ./thirdparty
