//! Every call into `libc`, each `unsafe` block with its `SAFETY:` comment, and the other readings of
//! the operating system (`/proc`). Nothing above this module calls `libc` itself.

use std::io;
use std::time::Duration;

use socket2::Socket;

/// Flags for every send: never raise SIGPIPE, whatever the embedding program does with that signal.
pub(crate) const SEND: libc::c_int = libc::MSG_NOSIGNAL;
/// The same, and never block.
pub(crate) const SEND_NOW: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
/// [`SEND_NOW`], and hold the bytes back for an instant so that a FIN sent right after them rides in
/// the same segment.
pub(crate) const SEND_NOW_MORE: libc::c_int = SEND_NOW | libc::MSG_MORE;

/// Waits until `socket` can take more data, or `timeout` passes; whether it can.
#[cfg(unix)]
pub(crate) fn wait_writable(socket: &Socket, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is one valid, initialised pollfd that lives across the call, and we pass its count
    // (1); poll(2) only writes its `revents` field. The descriptor stays open: `socket` is borrowed.
    let rc = unsafe { libc::poll(&mut fds, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}

/// Bytes of unsent or unacknowledged data in the socket's send queue (Linux `SIOCOUTQ`).
#[cfg(target_os = "linux")]
pub(crate) fn send_queue_len(socket: &Socket) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: `socket` owns a valid open descriptor for the duration of the call, and TIOCOUTQ (SIOCOUTQ
    // on TCP sockets) writes exactly one c_int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn send_queue_len(_socket: &Socket) -> io::Result<usize> {
    Ok(0)
}

/// Holds connections that have sent nothing in the kernel (Linux `TCP_DEFER_ACCEPT`) for up to `secs`
/// seconds: `accept` returns them only once their first data has arrived.
#[cfg(target_os = "linux")]
pub(crate) fn set_defer_accept(socket: &Socket, secs: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: `socket` owns a valid open descriptor for the call; the option value points at a live
    // c_int and the length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_defer_accept(_socket: &Socket, _secs: u32) -> io::Result<()> {
    Ok(())
}

/// Raises this process's soft limit on open descriptors to its hard limit; returns the limit now in
/// force.
pub(crate) fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass, which lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
    }
    Ok(limit.rlim_cur)
}

/// Resident memory (bytes) and thread count of this process, from `/proc/self/status`.
pub(crate) fn process_usage() -> (Option<u64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    (field("VmRSS:").map(|kib| kib * 1024), field("Threads:"))
}

/// With one thread per connection, glibc spreads allocations over many arenas and keeps what was freed
/// in them: after a burst of large messages, RSS stays hundreds of MiB above what is live (measured in
/// the 10,000-connection soak). Trimming hands the free pages back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks and madvises glibc's own free lists under its own locks; it takes
    // no pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::send_queue_len;

    fn pair() -> (socket2::Socket, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (socket2::Socket::from(server), client)
    }

    #[test]
    fn send_queue_len_counts_unacknowledged_bytes_and_the_fin() {
        use std::io::Read;
        let (server, mut client) = pair();
        assert_eq!(send_queue_len(&server).expect("ioctl"), 0);
        // The client reads nothing yet: what it has not taken stays in our send queue.
        server.set_nonblocking(true).expect("non-blocking");
        let chunk = [7u8; 64 * 1024];
        let mut written = 0;
        while let Ok(n) = server.send(&chunk) {
            written += n;
        }
        let queued = send_queue_len(&server).expect("ioctl");
        assert!(queued > 0 && queued <= written, "{queued} of {written}");
        // Once the client has read it all, our side drains to nothing ...
        let mut sink = vec![0u8; 256 * 1024];
        let mut read = 0;
        while read < written {
            read += client.read(&mut sink).expect("read");
        }
        let drained = || send_queue_len(&server).expect("ioctl") == 0;
        assert!(
            wait_for(drained),
            "still {} queued",
            send_queue_len(&server).expect("ioctl")
        );
        // ... and after a write shutdown only the FIN's sequence number can be left, until it is acked.
        server
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        assert!(send_queue_len(&server).expect("ioctl") <= 1);
        assert!(wait_for(drained), "the FIN was never acknowledged");
    }

    /// Polls `cond` for up to 5 s.
    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < until {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        cond()
    }

    /// The free memory glibc kept in holes of the heap (freed blocks between live ones, which it does
    /// not give back by itself) leaves the resident set when the ticker trims.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trimming_gives_freed_heap_memory_back() {
        const BLOCK: usize = 64 * 1024;
        let mut blocks: Vec<Option<Vec<u8>>> = (0..256u32)
            .map(|i| Some(vec![(i % 250) as u8 + 1; BLOCK]))
            .collect();
        // Every other block freed: 8 MiB of holes, none at the top of the heap.
        for block in blocks.iter_mut().step_by(2) {
            *block = None;
        }
        let resident = || super::process_usage().0.expect("/proc/self/status");
        let before = resident();
        super::release_free_memory();
        let after = resident();
        assert!(
            before.saturating_sub(after) >= 4 << 20,
            "RSS {before} -> {after} bytes"
        );
        // The live blocks are untouched.
        assert!(blocks
            .iter()
            .flatten()
            .all(|b| b.len() == BLOCK && b[0] == b[BLOCK - 1]));
    }
}
