// A third-party module of the scan fixture.
module example.com/thirdparty

go 1.26.0
