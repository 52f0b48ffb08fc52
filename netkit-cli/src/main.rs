//! `netkit`: iproute2's verbs on netkit-core. Everything is in the library (`netkit_cli`).

fn main() {
    std::process::exit(netkit_cli::main_with_args(std::env::args_os()));
}
