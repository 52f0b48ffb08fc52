module netkit.dev/netkit

go 1.19
