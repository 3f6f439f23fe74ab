// o365-essentials for .NET: a hand-written binding of the C ABI (o365_essentials.h).
//
// Written in the C# 6 that Debian's Mono compiler (mcs) accepts, so the same file builds
// with mcs and on .NET 8. Every operation of the engine's table is reached through
// Integration.Call (operation name + JSON parameters -> JSON result); Integration.Operations
// lists them.
//
// Rules kept here:
// * handles are SafeHandles: freed once, from any thread (a finalizer may do it), never
//   blocking; a call in flight keeps the integration alive;
// * strings cross as UTF-8 on every platform (marshalled by hand, not by the runtime's
//   ANSI default on Windows);
// * the event delegate is kept alive for the call; it runs on the calling thread before
//   Call returns; an exception thrown in it cancels the call and is rethrown after it,
//   with its original stack;
// * CallAsync returns a Task and cancels the engine's work through a CancellationToken.
using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace O365Essentials
{
    /// <summary>A failed call: the engine's code, what to do, and what the service said.</summary>
    public class O365Exception : Exception
    {
        public O365Exception(int code, string message, string action, string serviceCode,
            string requestId, string partialJson)
            : base(message)
        {
            Code = code;
            Action = action;
            ServiceCode = serviceCode;
            RequestId = requestId;
            PartialJson = partialJson;
        }

        /// <summary>The result code (O365_NOT_FOUND = 300, ...).</summary>
        public int Code { get; private set; }
        /// <summary>Its stable name ("not_found").</summary>
        public string CodeName { get { return Native.Utf8(Native.o365_error_code_name((uint)Code)); } }
        /// <summary>The code's family ("object", "service", ...).</summary>
        public string Family { get { return Native.Utf8(Native.o365_error_code_family((uint)Code)); } }
        /// <summary>What to do about it.</summary>
        public string Action { get; private set; }
        /// <summary>The service's own code, or null.</summary>
        public string ServiceCode { get; private set; }
        /// <summary>The service's request-id for support, or null.</summary>
        public string RequestId { get; private set; }
        /// <summary>What a cancelled call did (its result as JSON), or null.</summary>
        public string PartialJson { get; private set; }

        public override string ToString()
        {
            return CodeName + ": " + Message + " (" + Action + ")";
        }
    }

    internal static class Native
    {
        private const string Lib = "o365_essentials";

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int EventFn(IntPtr userdata, IntPtr eventJson);

        [StructLayout(LayoutKind.Sequential)]
        internal struct CallControl
        {
            public uint StructSize;
            public IntPtr Cancel;
            public IntPtr OnEvent;
            public IntPtr UserData;
            public uint LeaseWaitMs;
        }

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint o365_abi_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_error_code_name(uint code);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_error_code_family(uint code);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_error_message(IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_error_action(IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_error_service_code(IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_error_request_id(IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_error_partial_json(IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void o365_error_free(IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void o365_string_free(IntPtr s);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint o365_integration_open(byte[] configJson, out IntPtr handle, out IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void o365_integration_free(IntPtr handle);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint o365_call(IntPtr handle, byte[] operation, byte[] paramsJson,
            ref CallControl control, out IntPtr resultJson, out IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint o365_cancel_new(out IntPtr token);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void o365_cancel_trigger(IntPtr token);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void o365_cancel_free(IntPtr token);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr o365_operations_json();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint o365_sync_loop_start(IntPtr handle, byte[] paramsJson,
            EventFn onEvent, IntPtr userdata, out IntPtr loop, out IntPtr err);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void o365_sync_loop_stop(IntPtr loop, out ulong rounds);

        /// <summary>A NUL-terminated UTF-8 copy of s (null stays null).</summary>
        internal static byte[] Bytes(string s)
        {
            if (s == null) return null;
            byte[] text = Encoding.UTF8.GetBytes(s);
            byte[] z = new byte[text.Length + 1];
            Buffer.BlockCopy(text, 0, z, 0, text.Length);
            return z;
        }

        /// <summary>The UTF-8 C string at p (not freed), or null.</summary>
        internal static string Utf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            byte[] b = new byte[n];
            Marshal.Copy(p, b, 0, n);
            return Encoding.UTF8.GetString(b);
        }

        /// <summary>Throws for a failed result, freeing the C error.</summary>
        internal static void Check(uint code, IntPtr err)
        {
            if (code == 0) return;
            var ex = new O365Exception((int)code,
                Utf8(o365_error_message(err)) ?? ("o365 error " + code),
                Utf8(o365_error_action(err)), Utf8(o365_error_service_code(err)),
                Utf8(o365_error_request_id(err)), Utf8(o365_error_partial_json(err)));
            o365_error_free(err);
            throw ex;
        }
    }

    internal sealed class IntegrationHandle : SafeHandle
    {
        public IntegrationHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle()
        {
            // Never blocks; safe from the finalizer thread.
            Native.o365_integration_free(handle);
            return true;
        }
        internal void Set(IntPtr h) { SetHandle(h); }
    }

    internal sealed class CancelHandle : SafeHandle
    {
        public CancelHandle() : base(IntPtr.Zero, true)
        {
            IntPtr t;
            if (Native.o365_cancel_new(out t) != 0) throw new OutOfMemoryException();
            SetHandle(t);
        }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle()
        {
            Native.o365_cancel_free(handle);
            return true;
        }
        internal void Trigger()
        {
            bool added = false;
            try
            {
                DangerousAddRef(ref added);
                Native.o365_cancel_trigger(handle);
            }
            finally
            {
                if (added) DangerousRelease();
            }
        }
    }

    /// <summary>A running sync loop; Stop (or Dispose) ends it after the current item.</summary>
    public sealed class SyncLoop : IDisposable
    {
        private IntPtr loop;
        private readonly Native.EventFn keep;
        private readonly Integration owner;

        internal SyncLoop(IntPtr loop, Native.EventFn keep, Integration owner)
        {
            this.loop = loop;
            this.keep = keep;
            this.owner = owner;
        }

        /// <summary>Stops the loop and returns how many rounds ran; no event arrives after.</summary>
        public ulong Stop()
        {
            IntPtr l = Interlocked.Exchange(ref loop, IntPtr.Zero);
            ulong rounds = 0;
            if (l != IntPtr.Zero) Native.o365_sync_loop_stop(l, out rounds);
            GC.KeepAlive(keep);
            GC.KeepAlive(owner);
            return rounds;
        }

        public void Dispose() { Stop(); }
    }

    /// <summary>An open integration: one configuration, one store. Thread-safe.</summary>
    public sealed class Integration : IDisposable
    {
        private readonly IntegrationHandle h = new IntegrationHandle();

        /// <summary>Opens from the configuration JSON (docs/CONFIGURATION.md).</summary>
        public Integration(string configJson)
        {
            IntPtr handle, err;
            uint r = Native.o365_integration_open(Native.Bytes(configJson), out handle, out err);
            Native.Check(r, err);
            h.Set(handle);
        }

        /// <summary>The library's version.</summary>
        public static string Version { get { return Native.Utf8(Native.o365_version()); } }
        /// <summary>The C ABI's version.</summary>
        public static uint AbiVersion { get { return Native.o365_abi_version(); } }
        /// <summary>Every operation of the table as JSON (name, params, fields, result, ...).</summary>
        public static string Operations { get { return Native.Utf8(Native.o365_operations_json()); } }

        /// <summary>
        /// Runs an operation with JSON parameters and returns its JSON result. onEvent gets
        /// each event as JSON on this thread before Call returns; returning false cancels.
        /// </summary>
        public string Call(string operation, string paramsJson = "{}",
            Func<string, bool> onEvent = null,
            CancellationToken cancellationToken = default(CancellationToken),
            uint leaseWaitMs = 0)
        {
            if (operation == null) throw new ArgumentNullException("operation");
            ExceptionDispatchInfo thrown = null;
            Native.EventFn fn = null;
            if (onEvent != null)
            {
                fn = (ud, json) =>
                {
                    if (thrown != null) return 1;
                    try
                    {
                        return onEvent(Native.Utf8(json)) ? 0 : 1;
                    }
                    catch (Exception ex)
                    {
                        thrown = ExceptionDispatchInfo.Capture(ex);
                        return 1;
                    }
                };
            }
            using (var token = new CancelHandle())
            using (cancellationToken.Register(token.Trigger))
            {
                bool addedH = false, addedT = false;
                try
                {
                    h.DangerousAddRef(ref addedH);
                    token.DangerousAddRef(ref addedT);
                    var ctl = new Native.CallControl
                    {
                        StructSize = (uint)Marshal.SizeOf(typeof(Native.CallControl)),
                        Cancel = token.DangerousGetHandle(),
                        OnEvent = fn == null ? IntPtr.Zero : Marshal.GetFunctionPointerForDelegate(fn),
                        UserData = IntPtr.Zero,
                        LeaseWaitMs = leaseWaitMs,
                    };
                    IntPtr result, err;
                    uint r = Native.o365_call(h.DangerousGetHandle(), Native.Bytes(operation),
                        Native.Bytes(paramsJson ?? "{}"), ref ctl, out result, out err);
                    GC.KeepAlive(fn);
                    if (thrown != null)
                    {
                        if (err != IntPtr.Zero) Native.o365_error_free(err);
                        if (result != IntPtr.Zero) Native.o365_string_free(result);
                        thrown.Throw();
                    }
                    if (r == 900 && cancellationToken.IsCancellationRequested)
                    {
                        // Keep the engine's partial results while saying it the .NET way.
                        try { Native.Check(r, err); }
                        catch (O365Exception ex) { throw new OperationCanceledException(ex.Message, ex, cancellationToken); }
                    }
                    Native.Check(r, err);
                    string text = Native.Utf8(result);
                    Native.o365_string_free(result);
                    return text;
                }
                finally
                {
                    if (addedT) token.DangerousRelease();
                    if (addedH) h.DangerousRelease();
                }
            }
        }

        /// <summary>Call on a thread-pool thread; cancelling the token stops the engine's work.</summary>
        public Task<string> CallAsync(string operation, string paramsJson = "{}",
            Func<string, bool> onEvent = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            return Task.Run(() => Call(operation, paramsJson, onEvent, cancellationToken));
        }

        /// <summary>Starts the sync loop ({"interval_secs": 300}); events arrive on a library thread.</summary>
        public SyncLoop StartSyncLoop(string paramsJson = "{}", Action<string> onEvent = null)
        {
            Native.EventFn fn = null;
            if (onEvent != null)
            {
                fn = (ud, json) =>
                {
                    try { onEvent(Native.Utf8(json)); }
                    catch (Exception) { /* no call to rethrow into; the loop goes on */ }
                    return 0;
                };
            }
            IntPtr loop, err;
            bool added = false;
            try
            {
                h.DangerousAddRef(ref added);
                uint r = Native.o365_sync_loop_start(h.DangerousGetHandle(), Native.Bytes(paramsJson ?? "{}"),
                    fn, IntPtr.Zero, out loop, out err);
                Native.Check(r, err);
            }
            finally
            {
                if (added) h.DangerousRelease();
            }
            return new SyncLoop(loop, fn, this);
        }

        public void Dispose() { h.Dispose(); }
    }
}
