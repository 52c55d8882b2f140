package testenv

import (
	"os/exec"
	"syscall"
)

// serverProcess is a test server's process, which a fault test kills, or stops and resumes.
type serverProcess struct {
	cmd *exec.Cmd
}

// Stop kills the server (SIGKILL, as a crash) and waits for it.
func (p *serverProcess) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// Freeze stops the server (SIGSTOP): the kernel still accepts connections, nothing
// answers. Thaw resumes it.
func (p *serverProcess) Freeze() error { return p.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (p *serverProcess) Thaw() error { return p.cmd.Process.Signal(syscall.SIGCONT) }
