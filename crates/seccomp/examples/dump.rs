fn main() {
    gig_seccomp::write_to(std::io::stdout()).unwrap();
}
