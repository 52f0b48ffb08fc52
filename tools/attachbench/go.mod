module netkit.dev/attachbench

go 1.19

require netkit.dev/netkit v0.0.0

replace netkit.dev/netkit => ../../netkit-ffi/go
