"""The Pythonic client API over the syscall surface (mshv.open/ioctl/mmap/close)."""

from mshv.client.messages import ApicEoi as ApicEoi
from mshv.client.messages import CpuidIntercept as CpuidIntercept
from mshv.client.messages import ExceptionIntercept as ExceptionIntercept
from mshv.client.messages import GpaIntercept as GpaIntercept
from mshv.client.messages import Halt as Halt
from mshv.client.messages import InterceptMessage as InterceptMessage
from mshv.client.messages import InterruptionDeliverable as InterruptionDeliverable
from mshv.client.messages import InvalidVpRegisterValue as InvalidVpRegisterValue
from mshv.client.messages import IoPortIntercept as IoPortIntercept
from mshv.client.messages import MemoryIntercept as MemoryIntercept
from mshv.client.messages import Message as Message
from mshv.client.messages import MsrIntercept as MsrIntercept
from mshv.client.messages import SipiIntercept as SipiIntercept
from mshv.client.messages import UnmappedGpa as UnmappedGpa
from mshv.client.messages import UnrecoverableException as UnrecoverableException
from mshv.client.messages import UnsupportedFeature as UnsupportedFeature
from mshv.client.partition import RWX as RWX
from mshv.client.partition import RX as RX
from mshv.client.partition import Device as Device
from mshv.client.partition import GuestMemory as GuestMemory
from mshv.client.partition import MemoryRegion as MemoryRegion
from mshv.client.partition import Partition as Partition
from mshv.client.registers import Segment as Segment
from mshv.client.registers import Table as Table
from mshv.client.state import VpState as VpState
from mshv.client.vp import Vp as Vp
