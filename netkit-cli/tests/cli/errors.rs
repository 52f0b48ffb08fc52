//! Completions and the man page, made from the same clap definitions as the help. The help
//! pages and the error messages (exit codes, one line naming the object, the namespace and the
//! kernel's answer) are checked against their snapshots in [`crate::snapshots`].

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for (shell, marker) in [
        ("bash", "_netkit()"),
        ("zsh", "#compdef netkit"),
        ("fish", "complete -c netkit"),
    ] {
        let script = crate::common::ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        // Every object is completed, topo's verbs too.
        for word in ["netns", "link", "addr", "route", "topo", "apply", "destroy"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let man = crate::common::ok(&["man"]);
    assert!(man.contains(".TH netkit 1"), "{man}");
    assert!(man.contains("topo"), "the man page lists the topo command");
}
