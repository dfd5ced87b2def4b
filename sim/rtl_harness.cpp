// Cycle-accurate harness of the Verilated accelerator (module loom_accel), loaded by sim/rtl.py.
//
// It owns the clock: an AXI4 slave serves the m_axi_* port from a DRAM byte buffer that Python
// lends for one run (pointer and size, no copy) with a configurable read latency, write latency,
// data rate and number of bursts in flight, and an AXI4-Lite host drives s_axil_* like a CPU
// driver. No Python runs per cycle. The harness knows nothing of the register map: Python passes
// the register writes that start a run (the last one sets START and IRQ_ENABLE), the registers
// to poll while it runs (the first `progress_count` of them count work, for the watchdog) and
// the registers to read when it ends. The run ends when `irq` rises, when a burst leaves the
// buffer or breaks an AXI rule, after `max_cycles`, or after `idle_limit` cycles without an AXI
// handshake or a change of a progress register.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "Vloom_accel.h"
#include "verilated.h"

#if VM_TRACE_FST
#include "verilated_fst_c.h"
using WaveFile = VerilatedFstC;
#elif VM_TRACE_VCD
#include "verilated_vcd_c.h"
using WaveFile = VerilatedVcdC;
#endif

extern "C" {

// The DRAM model; fixed for the life of a simulator.
struct LoomDramParams {
    uint32_t bus_bytes;        // AXI data width in bytes
    uint32_t read_latency;     // cycles from an AR handshake to its first R beat (>= 1)
    uint32_t write_latency;    // cycles from a burst's last W beat to its B response (>= 1)
    uint32_t max_outstanding;  // bursts per direction accepted and not yet answered; 0: no limit
    uint64_t rate_q16;         // data per direction in 1/65536 bytes per cycle; 0: one beat/cycle
};

// One run: inputs first, then what the harness reports.
struct LoomRun {
    uint8_t* dram;
    uint64_t dram_size;
    const uint32_t* setup;       // (offset, value) pairs written in order; the last starts the run
    const uint32_t* poll;        // offsets read every poll_interval cycles while the run goes on
    const uint32_t* readout;     // offsets read twice after the run; the second pass shows motion
    uint32_t* readout_values;    // 2 * readout_count values: first pass, then second pass
    const char* waves;           // waveform file for this run, or null
    uint64_t poll_interval;
    uint64_t max_cycles;
    uint64_t idle_limit;
    uint32_t setup_count;
    uint32_t poll_count;
    uint32_t progress_count;     // the first progress_count polled registers count as progress
    uint32_t readout_count;
    uint32_t record_polls;       // keep every poll as (cycle, values...) for loom_samples
    // Results.
    uint32_t status;             // a LoomStatus
    uint64_t cycles;             // harness cycles from the start write to the end of the run
    uint64_t error_addr;         // the burst or byte address of an out-of-range or bad access
    uint64_t bytes_read;         // R beats times the bus width
    uint64_t bytes_written;      // W beats times the bus width
    uint64_t read_bursts;
    uint64_t write_bursts;
    char message[256];           // what went wrong, one line; empty after a clean run
};

}  // extern "C"

namespace {

enum LoomStatus : uint32_t {
    kDone = 0,        // irq rose: STATUS.DONE
    kTimeout = 1,     // max_cycles passed
    kStalled = 2,     // idle_limit cycles without progress
    kOutOfRange = 3,  // a burst or a written byte outside the DRAM buffer
    kProtocol = 4,    // the master broke an AXI rule the slave checks
    kHost = 5,        // an AXI-Lite transaction was not answered
    kFailed = 6,      // the harness itself failed (bad arguments, no memory, waves file)
};

constexpr int kResetCycles = 4;
constexpr int kLiteTimeout = 1000;
constexpr uint32_t kBurstIncr = 1;
constexpr uint64_t kPageBytes = 4096;
constexpr uint32_t kMaxBusBytes = 64;

std::string hex(uint64_t value) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
    return text;
}

// Ports of up to 64 bits are integers; wider ones are VlWide word arrays (word 0 lowest).
template <typename T, std::enable_if_t<std::is_integral<T>::value, int> = 0>
void set_bytes(T& port, const uint8_t* src, size_t n) {
    uint64_t value = 0;
    for (size_t i = 0; i < n; ++i) value |= static_cast<uint64_t>(src[i]) << (8 * i);
    port = static_cast<T>(value);
}

template <std::size_t N>
void set_bytes(VlWide<N>& port, const uint8_t* src, size_t n) {
    for (size_t w = 0; w < N; ++w) {
        uint32_t word = 0;
        for (size_t b = 0; b < 4 && 4 * w + b < n; ++b)
            word |= static_cast<uint32_t>(src[4 * w + b]) << (8 * b);
        port[w] = word;
    }
}

template <typename T, std::enable_if_t<std::is_integral<T>::value, int> = 0>
void get_bytes(const T& port, uint8_t* dst, size_t n) {
    const uint64_t value = port;
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<uint8_t>(value >> (8 * i));
}

template <std::size_t N>
void get_bytes(const VlWide<N>& port, uint8_t* dst, size_t n) {
    for (size_t i = 0; i < n && i < 4 * N; ++i)
        dst[i] = static_cast<uint8_t>(port[i / 4] >> (8 * (i % 4)));
}

template <typename T>
constexpr size_t port_bytes(const T&) {
    return sizeof(T);
}

struct Burst {
    uint64_t addr;
    uint32_t beats;
    uint32_t done = 0;  // beats transferred
    uint64_t due = 0;   // first edge at which its next response may complete
};

// What the design and the models offered at one rising edge.
struct Edge {
    bool ar = false, r = false, aw = false, w = false, b = false;
    uint64_t ar_addr = 0, aw_addr = 0;
    uint32_t ar_len = 0, ar_size = 0, ar_burst = 0;
    uint32_t aw_len = 0, aw_size = 0, aw_burst = 0;
    bool w_last = false;
    uint64_t w_strb = 0;
    uint8_t w_data[kMaxBusBytes] = {};
    bool lite_aw = false, lite_w = false, lite_b = false, lite_ar = false, lite_r = false;
    uint32_t lite_rdata = 0;
};

class Sim {
  public:
    explicit Sim(const LoomDramParams& params);
    ~Sim();
    Sim(const Sim&) = delete;
    Sim& operator=(const Sim&) = delete;

    void run(LoomRun& run);
    const std::vector<uint64_t>& samples() const { return samples_; }

  private:
    void reset();
    void step();
    void sample();
    void serve();
    void drive();
    void accept_read();
    void accept_write();
    void write_beat();
    bool check_burst(const char* kind, uint64_t addr, uint32_t len, uint32_t size,
                     uint32_t burst);
    void fail(uint32_t status, uint64_t addr, const std::string& message);
    bool lite_write(uint32_t offset, uint32_t value);
    bool lite_read(uint32_t offset, uint32_t& value);
    void poll(const LoomRun& run, std::vector<uint32_t>& progress);
    void open_waves(const char* path);
    void close_waves();

    LoomDramParams params_;
    std::unique_ptr<VerilatedContext> context_;
    std::unique_ptr<Vloom_accel> top_;
#if VM_TRACE
    std::unique_ptr<WaveFile> waves_;
#endif
    uint64_t cycle_ = 0;            // rising edges so far; the last one is edge cycle_
    uint64_t run_start_ = 0;        // the edge at which the current run started
    Edge edge_;

    // The slave's state for the current run.
    uint8_t* dram_ = nullptr;
    uint64_t dram_size_ = 0;
    std::deque<Burst> reads_;       // accepted AR bursts with R beats still to send
    std::deque<Burst> writes_;      // accepted AW bursts with W beats still to come
    std::deque<Burst> responses_;   // bursts whose B response is still to be taken
    uint64_t read_credit_ = 0;
    uint64_t write_credit_ = 0;
    uint64_t beat_cost_;            // one beat in the units of rate_q16
    uint64_t credit_cap_;
    uint64_t last_progress_ = 0;
    bool stopped_ = false;          // the slave stopped answering after an error
    bool dirty_ = false;            // the last run ended abnormally: reset before the next
    uint32_t status_ = kDone;
    uint64_t error_addr_ = 0;
    std::string message_;
    uint64_t bytes_read_ = 0, bytes_written_ = 0, read_bursts_ = 0, write_bursts_ = 0;
    std::vector<uint64_t> samples_;
};

Sim::Sim(const LoomDramParams& params)
    : params_(params), context_(std::make_unique<VerilatedContext>()) {
    if (params_.bus_bytes == 0 || params_.bus_bytes > kMaxBusBytes
        || (params_.bus_bytes & (params_.bus_bytes - 1)))
        throw std::invalid_argument("bus_bytes must be a power of two up to 64");
    if (params_.read_latency < 1 || params_.write_latency < 1)
        throw std::invalid_argument("read and write latencies must be at least 1 cycle");
    beat_cost_ = static_cast<uint64_t>(params_.bus_bytes) << 16;
    credit_cap_ = std::max(beat_cost_, params_.rate_q16);
#if VM_TRACE
    context_->traceEverOn(true);
#endif
    top_ = std::make_unique<Vloom_accel>(context_.get(), "loom_accel");
    if (port_bytes(top_->m_axi_rdata) < params_.bus_bytes)
        throw std::invalid_argument("bus_bytes is wider than the model's m_axi_rdata port");
    reset();
}

Sim::~Sim() {
    close_waves();
    top_->final();
}

void Sim::reset() {
    Vloom_accel& t = *top_;
    t.rst = 1;
    t.m_axi_arready = t.m_axi_awready = t.m_axi_wready = 0;
    t.m_axi_rvalid = t.m_axi_bvalid = t.m_axi_rlast = 0;
    t.m_axi_rid = t.m_axi_bid = t.m_axi_rresp = t.m_axi_bresp = 0;
    t.s_axil_awvalid = t.s_axil_wvalid = t.s_axil_bready = 0;
    t.s_axil_arvalid = t.s_axil_rready = 0;
    t.s_axil_awprot = t.s_axil_arprot = 0;
    stopped_ = true;  // the slave ignores the bus while the design is in reset
    for (int i = 0; i < kResetCycles; ++i) step();
    t.rst = 0;
    reads_.clear();
    writes_.clear();
    responses_.clear();
    read_credit_ = write_credit_ = credit_cap_;
    stopped_ = false;
    dirty_ = false;
    drive();
}

// One clock cycle: settle the inputs, record the handshakes of the coming edge, clock, serve.
void Sim::step() {
    top_->clk = 0;
    top_->eval();
#if VM_TRACE
    if (waves_) waves_->dump(10 * cycle_);
#endif
    sample();
    top_->clk = 1;
    top_->eval();
#if VM_TRACE
    if (waves_) waves_->dump(10 * cycle_ + 5);
#endif
    ++cycle_;
    serve();
}

void Sim::sample() {
    const Vloom_accel& t = *top_;
    Edge& e = edge_;
    e.ar = t.m_axi_arvalid && t.m_axi_arready;
    e.r = t.m_axi_rvalid && t.m_axi_rready;
    e.aw = t.m_axi_awvalid && t.m_axi_awready;
    e.w = t.m_axi_wvalid && t.m_axi_wready;
    e.b = t.m_axi_bvalid && t.m_axi_bready;
    if (e.ar) {
        e.ar_addr = t.m_axi_araddr;
        e.ar_len = t.m_axi_arlen;
        e.ar_size = t.m_axi_arsize;
        e.ar_burst = t.m_axi_arburst;
    }
    if (e.aw) {
        e.aw_addr = t.m_axi_awaddr;
        e.aw_len = t.m_axi_awlen;
        e.aw_size = t.m_axi_awsize;
        e.aw_burst = t.m_axi_awburst;
    }
    if (e.w) {
        e.w_last = t.m_axi_wlast;
        e.w_strb = t.m_axi_wstrb;
        get_bytes(t.m_axi_wdata, e.w_data, params_.bus_bytes);
    }
    e.lite_aw = t.s_axil_awvalid && t.s_axil_awready;
    e.lite_w = t.s_axil_wvalid && t.s_axil_wready;
    e.lite_b = t.s_axil_bvalid && t.s_axil_bready;
    e.lite_ar = t.s_axil_arvalid && t.s_axil_arready;
    e.lite_r = t.s_axil_rvalid && t.s_axil_rready;
    if (e.lite_r) e.lite_rdata = t.s_axil_rdata;
}

// The DRAM slave after an edge: take the handshakes it saw, then offer the next cycle's signals.
void Sim::serve() {
    if (stopped_) return;
    const Edge& e = edge_;
    if (e.ar || e.r || e.aw || e.w || e.b) last_progress_ = cycle_;
    if (e.ar) accept_read();
    if (e.r && !reads_.empty()) {
        Burst& burst = reads_.front();
        bytes_read_ += params_.bus_bytes;
        if (++burst.done == burst.beats) reads_.pop_front();
    }
    if (e.aw) accept_write();
    if (e.w) write_beat();
    if (e.b && !responses_.empty()) responses_.pop_front();
    if (stopped_) return;
    if (params_.rate_q16) {
        read_credit_ = std::min(read_credit_ + params_.rate_q16, credit_cap_);
        write_credit_ = std::min(write_credit_ + params_.rate_q16, credit_cap_);
    }
    drive();
}

void Sim::drive() {
    Vloom_accel& t = *top_;
    const uint64_t next = cycle_ + 1;  // the edge these signals are offered at
    const uint32_t limit = params_.max_outstanding;
    t.m_axi_arready = limit == 0 || reads_.size() < limit;
    t.m_axi_awready = limit == 0 || writes_.size() + responses_.size() < limit;
    t.m_axi_wready = !writes_.empty() && write_credit_ >= beat_cost_;

    // R and B hold an offer until it is taken.
    if (!(t.m_axi_rvalid && !edge_.r)) {
        t.m_axi_rvalid = 0;
        if (!reads_.empty() && reads_.front().due <= next && read_credit_ >= beat_cost_) {
            const Burst& burst = reads_.front();
            const uint64_t addr = burst.addr + uint64_t{burst.done} * params_.bus_bytes;
            // check_burst made sure the beat starts inside the buffer; a tail past its end
            // reads as zeros.
            uint8_t beat[kMaxBusBytes] = {};
            const uint64_t inside = std::min<uint64_t>(params_.bus_bytes, dram_size_ - addr);
            std::memcpy(beat, dram_ + addr, inside);
            set_bytes(t.m_axi_rdata, beat, params_.bus_bytes);
            t.m_axi_rlast = burst.done + 1 == burst.beats;
            t.m_axi_rvalid = 1;
            if (params_.rate_q16) read_credit_ -= beat_cost_;
        }
    }
    if (!(t.m_axi_bvalid && !edge_.b))
        t.m_axi_bvalid = !responses_.empty() && responses_.front().due <= next;
}

bool Sim::check_burst(const char* kind, uint64_t addr, uint32_t len, uint32_t size,
                      uint32_t burst) {
    const uint64_t beats = len + 1;
    const std::string what = std::string(kind) + " burst at " + hex(addr) + " of "
                             + std::to_string(beats) + " beats";
    if (burst != kBurstIncr) {
        fail(kProtocol, addr, what + " is not INCR (burst type " + std::to_string(burst) + ")");
    } else if ((1u << size) != params_.bus_bytes) {
        fail(kProtocol, addr, what + " has AxSIZE " + std::to_string(size) + ", not the full "
                              + std::to_string(params_.bus_bytes) + "-byte bus");
    } else if (addr % params_.bus_bytes) {
        fail(kProtocol, addr, what + " is not aligned to the bus");
    } else if (addr % kPageBytes + beats * params_.bus_bytes > kPageBytes) {
        fail(kProtocol, addr, what + " crosses a 4 KiB boundary");
    } else if (addr + (beats - 1) * params_.bus_bytes >= dram_size_) {
        // Every beat must start inside the buffer (the last one may run past its end).
        fail(kOutOfRange, addr, what + " reaches past the " + std::to_string(dram_size_)
                                + "-byte DRAM image");
    }
    return !stopped_;
}

void Sim::accept_read() {
    const Edge& e = edge_;
    if (!check_burst("read", e.ar_addr, e.ar_len, e.ar_size, e.ar_burst)) return;
    Burst burst{e.ar_addr, e.ar_len + 1};
    burst.due = cycle_ + params_.read_latency;
    reads_.push_back(burst);
    ++read_bursts_;
}

void Sim::accept_write() {
    const Edge& e = edge_;
    if (!check_burst("write", e.aw_addr, e.aw_len, e.aw_size, e.aw_burst)) return;
    writes_.push_back(Burst{e.aw_addr, e.aw_len + 1});
    ++write_bursts_;
}

void Sim::write_beat() {
    const Edge& e = edge_;
    if (writes_.empty()) {  // wready is only offered while a burst waits for data
        fail(kProtocol, 0, "W beat without a write burst");
        return;
    }
    Burst& burst = writes_.front();
    const uint64_t addr = burst.addr + uint64_t{burst.done} * params_.bus_bytes;
    const bool last = burst.done + 1 == burst.beats;
    if (e.w_last != last) {
        fail(kProtocol, burst.addr, "WLAST=" + std::to_string(int{e.w_last}) + " on beat "
                                        + std::to_string(burst.done + 1) + " of the "
                                        + std::to_string(burst.beats) + "-beat write burst at "
                                        + hex(burst.addr));
        return;
    }
    for (uint32_t i = 0; i < params_.bus_bytes; ++i) {
        if ((e.w_strb >> i & 1) && addr + i >= dram_size_) {
            fail(kOutOfRange, addr + i, "write of byte " + hex(addr + i) + " is past the "
                                            + std::to_string(dram_size_) + "-byte DRAM image");
            return;
        }
    }
    for (uint32_t i = 0; i < params_.bus_bytes; ++i)
        if (e.w_strb >> i & 1) dram_[addr + i] = e.w_data[i];
    bytes_written_ += params_.bus_bytes;
    if (params_.rate_q16) write_credit_ -= beat_cost_;
    if (++burst.done == burst.beats) {
        burst.due = cycle_ + params_.write_latency;
        responses_.push_back(burst);
        writes_.pop_front();
    }
}

void Sim::fail(uint32_t status, uint64_t addr, const std::string& message) {
    if (stopped_) return;  // the first error is the one to report
    stopped_ = true;
    status_ = status;
    error_addr_ = addr;
    message_ = message + " (cycle " + std::to_string(cycle_ - run_start_) + " of the run)";
    // The slave stops answering: the design's bursts stay unanswered until the next reset.
    Vloom_accel& t = *top_;
    t.m_axi_arready = t.m_axi_awready = t.m_axi_wready = 0;
    t.m_axi_rvalid = t.m_axi_bvalid = 0;
}

bool Sim::lite_write(uint32_t offset, uint32_t value) {
    Vloom_accel& t = *top_;
    t.s_axil_awaddr = offset & 0xfff;
    t.s_axil_wdata = value;
    t.s_axil_wstrb = 0xf;
    t.s_axil_awvalid = t.s_axil_wvalid = t.s_axil_bready = 1;
    for (int i = 0; i < kLiteTimeout; ++i) {
        step();
        if (edge_.lite_aw) t.s_axil_awvalid = 0;
        if (edge_.lite_w) t.s_axil_wvalid = 0;
        if (edge_.lite_b) {
            t.s_axil_bready = 0;
            return true;
        }
    }
    t.s_axil_awvalid = t.s_axil_wvalid = t.s_axil_bready = 0;
    return false;
}

bool Sim::lite_read(uint32_t offset, uint32_t& value) {
    Vloom_accel& t = *top_;
    t.s_axil_araddr = offset & 0xfff;
    t.s_axil_arvalid = t.s_axil_rready = 1;
    for (int i = 0; i < kLiteTimeout; ++i) {
        step();
        if (edge_.lite_ar) t.s_axil_arvalid = 0;
        if (edge_.lite_r) {
            t.s_axil_rready = 0;
            value = edge_.lite_rdata;
            return true;
        }
    }
    t.s_axil_arvalid = t.s_axil_rready = 0;
    return false;
}

// Read the polled registers; a change of a progress register counts as progress.
void Sim::poll(const LoomRun& run, std::vector<uint32_t>& progress) {
    const uint64_t start = cycle_ - run_start_;
    std::vector<uint32_t> values(run.poll_count);
    for (uint32_t i = 0; i < run.poll_count; ++i) {
        if (!lite_read(run.poll[i], values[i])) {
            fail(kHost, run.poll[i], "AXI-Lite read of " + hex(run.poll[i]) + " got no answer");
            return;
        }
    }
    for (uint32_t i = 0; i < run.progress_count && i < run.poll_count; ++i) {
        if (values[i] != progress[i]) {
            last_progress_ = cycle_;
            progress[i] = values[i];
        }
    }
    if (run.record_polls) {
        samples_.push_back(start);
        samples_.insert(samples_.end(), values.begin(), values.end());
    }
}

void Sim::open_waves(const char* path) {
#if VM_TRACE
    waves_ = std::make_unique<WaveFile>();
    top_->trace(waves_.get(), 99);
    waves_->open(path);
    if (!waves_->isOpen()) {
        waves_.reset();
        throw std::runtime_error(std::string("cannot open the waveform file ") + path);
    }
#else
    (void)path;
    throw std::runtime_error("this model was built without waveform support");
#endif
}

void Sim::close_waves() {
#if VM_TRACE
    if (waves_) {
        waves_->close();
        waves_.reset();
    }
#endif
}

void Sim::run(LoomRun& run) {
    if (!run.dram || run.dram_size == 0 || run.setup_count == 0)
        throw std::invalid_argument("a run needs a DRAM buffer and at least the start write");
    if (run.progress_count > run.poll_count)
        throw std::invalid_argument("progress_count exceeds poll_count");
    if (dirty_) reset();
    run_start_ = cycle_;
    dram_ = run.dram;
    dram_size_ = run.dram_size;
    status_ = kDone;
    error_addr_ = 0;
    message_.clear();
    bytes_read_ = bytes_written_ = read_bursts_ = write_bursts_ = 0;
    samples_.clear();
    if (run.waves) open_waves(run.waves);

    for (uint32_t i = 0; i < run.setup_count && !stopped_; ++i) {
        const uint32_t offset = run.setup[2 * i];
        if (!lite_write(offset, run.setup[2 * i + 1]))
            fail(kHost, offset, "AXI-Lite write to " + hex(offset) + " got no answer");
    }
    run_start_ = cycle_;
    last_progress_ = cycle_;
    // Counters restart at zero with the run.
    std::vector<uint32_t> progress(run.poll_count, 0);
    uint64_t next_poll = cycle_ + run.poll_interval;
    while (!stopped_ && !top_->irq) {
        if (cycle_ - run_start_ >= run.max_cycles) {
            fail(kTimeout, 0, "not done after " + std::to_string(run.max_cycles) + " cycles");
        } else if (cycle_ - last_progress_ >= run.idle_limit) {
            fail(kStalled, 0, "no DRAM traffic and no GEMM/ALU progress for "
                                  + std::to_string(cycle_ - last_progress_) + " cycles");
        } else if (run.poll_count && run.poll_interval && cycle_ >= next_poll) {
            poll(run, progress);
            next_poll = cycle_ + run.poll_interval;
        } else {
            step();
        }
    }
    run.cycles = cycle_ - run_start_;
    if (status_ == kDone && (!reads_.empty() || !writes_.empty() || !responses_.empty()))
        fail(kProtocol, 0, "STATUS.DONE with " + std::to_string(reads_.size() + writes_.size()
                                                                + responses_.size())
                               + " DRAM bursts still in flight");
    // The slave stays stopped after an error; the host can still read the registers.
    for (uint32_t pass = 0; pass < 2; ++pass) {
        for (uint32_t i = 0; i < run.readout_count; ++i) {
            uint32_t& value = run.readout_values[pass * run.readout_count + i];
            value = 0;
            if (!lite_read(run.readout[i], value) && status_ == kDone)
                fail(kHost, run.readout[i], "AXI-Lite read of " + hex(run.readout[i])
                                                + " got no answer");
        }
    }
    close_waves();
    dirty_ = status_ != kDone;
    stopped_ = false;
    dram_ = nullptr;
    dram_size_ = 0;

    run.status = status_;
    run.error_addr = error_addr_;
    run.bytes_read = bytes_read_;
    run.bytes_written = bytes_written_;
    run.read_bursts = read_bursts_;
    run.write_bursts = write_bursts_;
    std::snprintf(run.message, sizeof run.message, "%s", message_.c_str());
}

void report(LoomRun* run, const char* message) {
    if (!run) return;
    run->status = kFailed;
    std::snprintf(run->message, sizeof run->message, "%s", message);
}

}  // namespace

extern "C" {

// Sizes of the ABI structs, so the Python side can refuse a mismatched library.
void loom_abi(uint64_t* sizes) {
    sizes[0] = sizeof(LoomDramParams);
    sizes[1] = sizeof(LoomRun);
}

// A simulator in reset, or null (with the reason in `error`, of `error_size` bytes).
void* loom_create(const LoomDramParams* params, char* error, uint64_t error_size) {
    try {
        return new Sim(*params);
    } catch (const std::exception& exc) {
        if (error && error_size) std::snprintf(error, error_size, "%s", exc.what());
        return nullptr;
    }
}

// Run one program; the result is in `run` (status, counts, message). Returns run->status.
uint32_t loom_run(void* sim, LoomRun* run) {
    try {
        static_cast<Sim*>(sim)->run(*run);
    } catch (const std::exception& exc) {
        report(run, exc.what());
    }
    return run->status;
}

// Copy the last run's polls, (cycle, values...) each, into `out`; returns how many there are.
uint64_t loom_samples(void* sim, uint64_t* out, uint64_t capacity) {
    const std::vector<uint64_t>& samples = static_cast<Sim*>(sim)->samples();
    if (out) std::copy_n(samples.begin(), std::min<uint64_t>(capacity, samples.size()), out);
    return samples.size();
}

void loom_destroy(void* sim) {
    delete static_cast<Sim*>(sim);
}

}  // extern "C"
